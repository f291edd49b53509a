"""Generated firmware as an Arduino library (+ a PlatformIO project using it), for both
runtimes: TFLite Micro and the interpreter-free C runtime.

Layout of ``--out DIR`` (``NAME`` = the sketch/library name)::

    DIR/README.md
    DIR/NAME/library.properties            --format arduino|both: the Arduino library
    DIR/NAME/src/NAME.h                    what a sketch includes (API + validation server)
    DIR/NAME/src/td_app.h, td_app.c        the application API (td_begin, td_run_float, ...;
                                           plain C99, no Arduino.h: td_app_arduino.cpp
                                           only sets its default clock to micros())
    DIR/NAME/src/td_sample.h               one stored test sample (the basic example)
    DIR/NAME/src/...                       model + runtime + protocol sources
    DIR/NAME/examples/basic/basic.ino      one sample -> printed result and top label
    DIR/NAME/examples/validate/validate.ino  the protocol server `tinydeploy validate` uses
    DIR/NAME/extras/host_c/main.c          --runtime c: the library from plain C on a PC
                                           (gcc, no Arduino), one sample -> its label
    DIR/platformio.ini, DIR/lib/NAME/      --format platformio|both
    DIR/src/tinydeploy/main.cpp            validate ([env:BOARD], what tinydeploy flashes);
                                           -D TD_EXAMPLE_BASIC ([env:BOARD_basic]) = basic
    DIR/src/main.cpp                       the user's application ([env:BOARD_app]): created
                                           once, never overwritten (``APP_SKELETON``)

``generate`` owns only the files it wrote (:func:`tinydeploy.output.staged_output` with
``owned=True``): other files in ``DIR`` stay, a generated file the user edited is kept and
the new one written beside it (``NAME.new``), stale generated files are removed.

C runtime budget (per board; the TFLM one is ``tinydeploy.render.budget``): flash =
weights and parameter tables of ``td_model.c`` + C code (``C_CODE_BASE`` for kernels,
protocol, server and API, measured on Cortex-M4/M0+ objects with margin, plus
``C_CODE_PER_OP`` per operator call) + the Arduino core (``Board.framework_flash``); RAM =
the static arena + the API and server tensor buffers + the protocol storage + a stack
reserve (``C_STACK_RESERVE``) + the core (``Board.framework_ram``), plus code and weights on
boards that run code from RAM (Teensy 4).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .app_api import api_context, class_labels, load_sample
from .arena.plan import ArenaPlan
from .boards import KIB, Board
from .errors import TinyDeployError
from .facts import ModelFacts
from .render_base import (
    PROTOCOL_RAM,
    SERIAL_BAUD,
    Budget,
    GenerateResult,
    board_context,
    comment_text,
    template_env,
)

if TYPE_CHECKING:
    from .cruntime.patch_auto import PatchChoice

C_CODE_BASE = 40 * KIB  # kernels + protocol + server + API + libm pieces (see tests)
C_CODE_PER_OP = 128  # one kernel call with its arguments in td_invoke()
C_STACK_RESERVE = 4 * KIB
C_FIRMWARE = ("td_protocol.h", "td_protocol.c", "td_arduino.h", "td_arduino.cpp",
              "td_tflm_app.h", "td_c_app.cpp")
LIB_TEMPLATES = {  # path in the library -> template
    "library.properties": "_lib/library.properties.jinja",
    "src/{name}.h": "_lib/lib.h.jinja",
    "src/td_app.h": "_lib/td_app.h.jinja",
    "src/td_app.c": "_lib/td_app.c.jinja",
    "src/td_app_arduino.cpp": "_lib/td_app_arduino.cpp.jinja",
    "src/td_sample.h": "_lib/td_sample.h.jinja",
    "examples/basic/basic.ino": "_lib/basic.ino.jinja",
    "examples/validate/validate.ino": "_lib/validate.ino.jinja",
}
HOST_EXAMPLE = "extras/host_c/main.c"  # plain C on a PC (C runtime; extras/: not a sketch)
APP_SKELETON = "src/main.cpp"  # the user's app in the PlatformIO project (created once)
SERVER_MAIN = "src/tinydeploy/main.cpp"  # the validation server (generated)
OVERRIDES_TEMPLATE = "_shared/overrides.h.jinja"
RUNTIME_TEMPLATES = {
    "tflm": {"src/model_settings.h": "_shared/settings.h.jinja",
             "src/td_tflm_app.cpp": "_shared/app.cpp.jinja"},
    "c": {"src/model_settings.h": "_lib/c_settings.h.jinja",
          HOST_EXAMPLE: "_lib/host_c.c.jinja"},
}


# --- C runtime budget ----------------------------------------------------------------------
@dataclass(frozen=True)
class CBudget(Budget):
    """Flash and RAM of the C-runtime firmware on one board (same fields as TFLM's)."""

    def flash_detail(self) -> str:
        return (f"flash {self.flash_used} > {self.flash_limit} bytes (weights and "
                f"parameters {self.model_bytes} + C runtime code ~{self.code_bytes} + "
                f"core ~{self.framework_flash})")

    def ram_detail(self) -> str:
        extra = (f" + code and weights {self.model_bytes + self.code_bytes} (run from "
                 "RAM)" if self.code_in_ram else "")
        return (f"RAM {self.ram_used} > {self.ram_limit} bytes (static arena "
                f"{self.arena_bytes} + tensor buffers/protocol/stack ~{self.overhead_ram}"
                f" + core ~{self.framework_ram}{extra})")


def c_code_estimate(n_ops: int) -> int:
    """Estimated .text of the C-runtime firmware without the Arduino core."""
    return C_CODE_BASE + C_CODE_PER_OP * n_ops


def c_budget(board: Board, weights: int, n_ops: int, arena: int, io_bytes: int,
             output_count: int) -> CBudget:
    """The C-runtime budget of one board."""
    overhead = PROTOCOL_RAM + 2 * io_bytes + 4 * output_count + 16 + C_STACK_RESERVE
    return CBudget(
        board=board.id, model_bytes=weights, code_bytes=c_code_estimate(n_ops),
        framework_flash=board.framework_flash, flash_limit=board.flash_bytes,
        arena_bytes=arena, overhead_ram=overhead, framework_ram=board.framework_ram,
        code_in_ram=board.code_in_ram, ram_limit=board.ram_bytes)


def check_c_budget(facts: ModelFacts, b: CBudget) -> CBudget:
    """``b`` if it fits; else ``TinyDeployError("does_not_fit")`` with the numbers."""
    if b.flash_used > b.flash_limit:
        raise TinyDeployError("does_not_fit", what=f"model {facts.name} (C runtime)",
                              board=b.board, detail=b.flash_detail(),
                              fix="use a smaller model or a board with more flash")
    if b.ram_used > b.ram_limit:
        raise TinyDeployError("does_not_fit", what=f"model {facts.name} (C runtime)",
                              board=b.board, detail=b.ram_detail(),
                              fix="use a smaller model or a board with more RAM")
    return b


# --- rendering -------------------------------------------------------------------------------
def render_files(env: Any, mapping: dict[str, str], ctx: dict[str, Any], dest: Path,
                 ) -> list[Path]:
    """Render each template of ``mapping`` (relative path -> template) under ``dest``."""
    written = []
    for rel, template in mapping.items():
        target = dest / rel.format(name=ctx["name"])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(env.get_template(template).render(ctx), encoding="utf-8")
        written.append(target)
    return written


def copy_firmware(names: tuple[str, ...], dest: Path) -> list[Path]:
    """Copy files of tinydeploy's ``firmware/`` into ``dest`` (``tool_missing`` if absent)."""
    from .resources import firmware_dir

    fw = firmware_dir()
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        if not (fw / name).is_file():
            raise TinyDeployError("tool_missing", tool=f"firmware source {fw / name}",
                                  fix="reinstall tinydeploy (its firmware/ folder is incomplete)")
        shutil.copyfile(fw / name, dest / name)
        written.append(dest / name)
    return written


def write_library(env: Any, ctx: dict[str, Any], dest: Path, runtime: str,
                  sources: dict[str, str], firmware: tuple[str, ...]) -> list[Path]:
    """The Arduino library ``dest`` (= ``.../NAME``): templates, generated ``sources``
    (file name -> text, e.g. the model array or td_model.c) and ``firmware`` files."""
    mapping = {**LIB_TEMPLATES, **RUNTIME_TEMPLATES[runtime]}
    if ctx.get("overrides"):  # kernels replacing the TFLM library's (tflm_overrides)
        mapping["src/td_tflm_overrides.h"] = OVERRIDES_TEMPLATE
    files = render_files(env, mapping, {**ctx, "with_arduino_h": False}, dest)
    for fname, text in sources.items():
        (dest / "src" / fname).write_text(text, encoding="utf-8")
        files.append(dest / "src" / fname)
    return files + copy_firmware(firmware, dest / "src")


def write_platformio(env: Any, ctx: dict[str, Any], dest: Path, runtime: str,
                     sources: dict[str, str], firmware: tuple[str, ...]) -> list[Path]:
    """``platformio.ini``, the validation server ``SERVER_MAIN``, the app skeleton
    ``APP_SKELETON`` (stage it with ``once={APP_SKELETON}``) and the library ``lib/NAME``."""
    files = render_files(env, {"platformio.ini": "platformio/platformio.ini.jinja",
                               SERVER_MAIN: "platformio/src/tinydeploy/main.cpp.jinja",
                               APP_SKELETON: "platformio/app.cpp.jinja"},
                         {**ctx, "with_arduino_h": True}, dest)
    return files + write_library(env, ctx, dest / "lib" / ctx["name"], runtime, sources,
                                 firmware)


def properties_context(boards: list[Board], runtime: str) -> dict[str, str]:
    """``architectures`` and ``depends`` of ``library.properties``. The C runtime needs no
    other library and is plain C: ``*``. TFLM: the architectures the boards' TFLM libraries
    declare (``*`` when one declares ``*`` or a board has none), each library pinned to its
    version with the Arduino syntax ``NAME (=X.Y.Z)``."""
    libs = {b.tflm_lib.id: b.tflm_lib for b in boards if b.tflm_lib} if runtime == "tflm" \
        else {}
    archs = [a for lib in libs.values() for a in lib.architectures]
    if not libs or "*" in archs or any(b.tflm_lib is None for b in boards):
        archs = ["*"]
    return {"architectures": ",".join(dict.fromkeys(archs)),
            "depends": ", ".join(f"{lib.name} (={lib.version})" for lib in libs.values())}


def lib_context(facts: ModelFacts, name: str, runtime: str, labels: Any, data: Any,
                boards: list[Board] | None = None) -> dict[str, Any]:
    """The application-API part of the template context (labels, sample, tensors,
    preprocessing, ``library.properties``)."""
    found = class_labels(facts, labels)
    return {**api_context(facts, found, load_sample(facts, data, found), runtime, name),
            **properties_context(boards or [], runtime)}


def generate_c_firmware(facts: ModelFacts, out_path: Path, boards: list[Board], fmt: str,
                        name: str, labels: Any = None, data: Any = None,
                        patch: PatchChoice = "auto") -> GenerateResult:
    """Arduino library and/or PlatformIO project around the C runtime for MCU ``boards``
    (see the module docstring); a :class:`GenerateResult`. ``patch``: the patch-based
    stage (:func:`tinydeploy.cruntime.codegen.build`).

    Errors: the C runtime's refusals (unsupported op), ``does_not_fit`` (budget),
    ``bad_argument``/``bad_data`` (labels, sample data); nothing is written then."""
    from ._version import __version__
    from .cruntime import codegen
    from .log import stage
    from .output import staged_output

    texts, cres = codegen.build(facts, name, patch)  # refuses unsupported models first
    api = lib_context(facts, name, "c", labels, data, boards)
    weights = cres.weight_bytes + cres.param_bytes
    budgets = [check_c_budget(facts, c_budget(b, weights, cres.n_ops, cres.plan.size,
                                               api["input_bytes"] + api["output_bytes"],
                                               api["output_count"])) for b in boards]
    stage("generate", f"{facts.name} -> {out_path} (C runtime, {fmt}; "
                      f"{', '.join(b.id for b in boards)}; static arena {cres.plan.size} B)")
    bctx = []
    for bd, b in zip(boards, budgets, strict=True):
        d = board_context(bd, b)
        d["tflm_lib_deps"] = None
        bctx.append(d)
    ctx = {**api, "version": __version__, "firmware_version": f"tinydeploy {__version__}",
           "model": {"name": comment_text(facts.name), "file": comment_text(Path(facts.path).name),
                     "sha256": facts.sha256, "bytes": facts.size_bytes},
           "boards": bctx, "baud": SERIAL_BAUD, "sketch": name,
           "arduino": fmt in ("arduino", "both"), "platformio": fmt in ("platformio", "both"),
           "arena_bytes": cres.plan.size, "weights": weights, "n_ops": cres.n_ops,
           "estimate": {"code": c_code_estimate(cres.n_ops), "stack": C_STACK_RESERVE},
           "compiler_note": compiler_note(boards)}
    firmware = tuple(dict.fromkeys((*C_FIRMWARE, *codegen.KERNEL_FILES,
                                    *codegen.SUPPORT_FILES)))
    plan = ArenaPlan(cres.plan.size, None, 0, f"static arena planned offline by the C runtime "
                                              f"(lower bound {cres.plan.lower_bound} B)")
    result = GenerateResult(out=out_path, boards=[b.id for b in boards], runtime="c", fmt=fmt,
                            sketch=name, arena=plan, budgets=budgets)
    env = template_env()
    with staged_output(out_path, owned=True, once={APP_SKELETON}) as tmp:
        files = render_files(env, {"README.md": "_lib/README_c.md.jinja"}, ctx, tmp)
        if ctx["platformio"]:
            files += write_platformio(env, ctx, tmp, "c", texts, firmware)
        if ctx["arduino"]:
            files += write_library(env, ctx, tmp / name, "c", texts, firmware)
        result.files = sorted(out_path / f.relative_to(tmp) for f in files)
    result.platformio_dir = out_path if ctx["platformio"] else None
    result.sketch_dir = out_path / name if ctx["arduino"] else None
    result.readme = out_path / "README.md"
    return result


def compiler_note(boards: list[Board]) -> str:
    """Which boards CI compiles to objects (arm-none-eabi-gcc) and which it only renders."""
    arm = [b.id for b in boards if b.core.startswith("Cortex")]
    other = [b.id for b in boards if not b.core.startswith("Cortex")]
    note = f"compiled to objects in tinydeploy's CI with arm-none-eabi-gcc: {', '.join(arm)}" \
        if arm else ""
    if other:
        note += ("; " if note else "") + (f"rendered only (no compiler for it in CI): "
                                          f"{', '.join(other)}")
    return note


def project_sources(project: Path) -> tuple[list[Path], list[Path]]:
    """The C/C++ sources the validation server env ``[env:BOARD]`` of a generated PlatformIO
    ``project`` compiles (``src/tinydeploy/`` and every ``lib/*/src/``, as PlatformIO's
    library finder does; not the user's app in ``src/``) and the include folders. For tools
    that build the project without PlatformIO (native/QEMU builds)."""
    project = Path(project)
    libs = sorted(p / "src" for p in (project / "lib").glob("*") if (p / "src").is_dir())
    folders = [project / Path(SERVER_MAIN).parent, *libs]
    sources = [f for d in folders for f in sorted(d.iterdir())
               if f.suffix in (".c", ".cpp", ".cc")]
    return sources, folders
