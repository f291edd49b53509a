"""What every firmware renderer shares, below both :mod:`tinydeploy.render` (TFLM, the
``generate`` entry point) and :mod:`tinydeploy.library` (the Arduino library and the C
runtime on MCU boards): the budget record, the board context of the templates, the Jinja2
environment, C comment text and the result of ``generate``.

Imports go one way: ``render`` -> ``library`` -> ``app_api`` -> ``render_base``; nothing here
imports any of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .arduino_cores import core_of
from .boards import Board
from .tflm_libraries import library_context

if TYPE_CHECKING:
    from .arena.plan import ArenaPlan

# TD_DEVICE_STORAGE_BYTES of td_protocol.h (TD_MAX_PAYLOAD + 384; inputs and outputs travel
# in chunks straight into/out of the arena's tensors)
TD_MAX_PAYLOAD = 1024
PROTOCOL_RAM = TD_MAX_PAYLOAD + 384
SERIAL_BAUD = 115200
_CYCLES = {"dwt": "TD_CYCLES_DWT", "ccount": "TD_CYCLES_CCOUNT", "none": "TD_CYCLES_NONE",
           "systick": "TD_CYCLES_CORE"}  # systick: qemu-cm4's core (firmware/arduino_core)


@dataclass(frozen=True)
class Budget:
    """Estimated flash and RAM use of the TFLM firmware on one board."""

    board: str
    model_bytes: int
    code_bytes: int
    framework_flash: int
    flash_limit: int
    arena_bytes: int
    overhead_ram: int
    framework_ram: int
    code_in_ram: bool
    ram_limit: int

    @property
    def flash_used(self) -> int:
        return self.model_bytes + self.code_bytes + self.framework_flash

    @property
    def ram_used(self) -> int:
        in_ram = self.model_bytes + self.code_bytes if self.code_in_ram else 0
        return self.arena_bytes + self.overhead_ram + self.framework_ram + in_ram

    @property
    def fits(self) -> bool:
        return self.flash_used <= self.flash_limit and self.ram_used <= self.ram_limit

    def flash_detail(self) -> str:
        return (f"flash {self.flash_used} > {self.flash_limit} bytes (model {self.model_bytes}"
                f" + TFLM code ~{self.code_bytes} + core ~{self.framework_flash})")

    def ram_detail(self) -> str:
        extra = (f" + code and model {self.model_bytes + self.code_bytes} (run from RAM)"
                 if self.code_in_ram else "")
        return (f"RAM {self.ram_used} > {self.ram_limit} bytes (arena {self.arena_bytes}"
                f" + interpreter/protocol/stack ~{self.overhead_ram} + core "
                f"~{self.framework_ram}{extra})")

    def line(self) -> str:
        if not (self.flash_limit and self.ram_limit):
            return f"{self.board}: flash ~{self.flash_used} B, RAM ~{self.ram_used} B (no limit)"
        return (f"{self.board}: flash ~{self.flash_used}/{self.flash_limit} B "
                f"({100 * self.flash_used / self.flash_limit:.0f}%), RAM ~{self.ram_used}/"
                f"{self.ram_limit} B ({100 * self.ram_used / self.ram_limit:.0f}%)")




def comment_text(text: str) -> str:
    """``text`` safe inside a C/C++ comment and on one line of any generated file: printable
    ASCII only, no comment delimiters, trigraphs or line splices."""
    out = "".join(c if " " <= c <= "~" else "_" for c in " ".join(str(text).split()))
    for bad, good in (("*/", "*_/"), ("/*", "/_*"), ("//", "/_/"), ("??", "?_"),
                      ("\\", "_")):
        out = out.replace(bad, good)
    return out




def lib_macro(header: str) -> str:
    stem = header.rsplit(".", 1)[0]
    return "TD_TFLM_" + "".join(c if c.isalnum() else "_" for c in stem).upper()


def board_context(board: Board, b: Budget) -> dict[str, Any]:
    cond = " || ".join(f"defined({m})" for m in (board.define, *board.arduino_macros))
    return {"id": board.id, "name": board.name, "define": board.define, "condition": cond,
            "cpu_hz": board.clock_hz, "cycles": _CYCLES[board.cycle_counter],
            "cycle_counter": board.cycle_counter, "mcu": board.mcu, "core": board.core,
            "lib_macro": lib_macro(board.tflm_header or "none"),
            "tflm_header": board.tflm_header, "tflm_lib_deps": board.tflm_lib_deps,
            "tflm_arduino_lib": board.tflm_arduino_lib, "pio_platform": board.pio_platform,
            "tflm_lib": library_context(board.tflm_lib, [board]) if board.tflm_lib else None,
            # README board table: the library (pseudo-boards build against a given tree)
            "tflm_lib_text": board.tflm_lib.label if board.tflm_lib else "the TFLM tree given "
                             "with --tflm-src",
            "pio_board": board.pio_board, "pio_framework": board.pio_framework,
            "fqbn": board.arduino_fqbn, "monitor_speed": board.monitor_speed,
            "arduino_core": core_of(board.arduino_fqbn)[0],
            "arduino_core_url": core_of(board.arduino_fqbn)[1],
            "budget": b, "flash_used": b.flash_used, "ram_used": b.ram_used}




def template_env() -> Any:
    import jinja2

    from .resources import templates_dir

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())), undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)




@dataclass
class GenerateResult:
    out: Path
    boards: list[str]
    runtime: str
    fmt: str
    sketch: str
    arena: ArenaPlan
    budgets: list[Budget]
    files: list[Path] = field(default_factory=list)
    sketch_dir: Path | None = None
    platformio_dir: Path | None = None
    readme: Path | None = None

    @property
    def arena_size(self) -> int:
        return self.arena.size

    def to_dict(self) -> dict[str, Any]:
        def path(p: Path | None) -> str | None:  # absolute: valid from any folder
            return str(Path(p).resolve()) if p else None

        return {"out": path(self.out), "boards": self.boards, "runtime": self.runtime,
                "format": self.fmt, "sketch": self.sketch, "arena_size": self.arena.size,
                "arena_predicted": self.arena.predicted, "arena_margin": self.arena.margin,
                "budgets": [{"board": b.board, "flash_used": b.flash_used,
                             "flash_limit": b.flash_limit, "ram_used": b.ram_used,
                             "ram_limit": b.ram_limit} for b in self.budgets],
                "files": [path(f) for f in self.files],
                "sketch_dir": path(self.sketch_dir),
                "platformio_dir": path(self.platformio_dir)}

    def summary(self) -> str:
        lines = [f"generated {self.runtime} firmware for {', '.join(self.boards)} in {self.out}"]
        if self.platformio_dir:
            lines.append(f"  PlatformIO project: {self.platformio_dir / 'platformio.ini'}")
        if self.sketch_dir:
            lines.append(f"  Arduino library:    {self.sketch_dir} (examples basic, validate)")
        lines.append(f"  tensor arena: {self.arena.size} B ({self.arena.note})")
        lines += [f"  {b.line()}" for b in self.budgets]
        if self.readme:
            lines.append(f"  see {self.readme}")
        return "\n".join(lines)
