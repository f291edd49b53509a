"""TFLite Micro Arduino/PlatformIO libraries as data: one table, pinned and checked.

Every MCU board in :mod:`tinydeploy.boards` names one library id from this table; the
renderer reads from it the ``#include``, the PlatformIO ``lib_deps`` (an exact version, no
``^``), the Arduino Library Manager name (exact spelling, e.g. ``Chirale_TensorFLowLite``
with a capital L), what the generated README says (TFLM date, kernel flavour, the Arduino
IDE "incompatible architecture" warning) and which operators the library's
``MicroMutableOpResolver`` can register.

The facts live in ``tflm_libraries.json`` beside this module. They were extracted from the
real library trees by ``scripts/extract_tflm_facts.py``; the per-version fixtures in
``tests/fixtures/tflm/`` hold the full extraction, and ``tests/test_tflm_libraries.py``
checks that this table agrees with them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import TinyDeployError, check_choice

if TYPE_CHECKING:
    from .boards import Board

# The MicroInterpreter constructor the generated firmware calls:
# MicroInterpreter(model, resolver, tensor_arena, kArenaSize)
FIRMWARE_CTOR = ("const Model*", "const MicroOpResolver&", "uint8_t*", "size_t")
KERNEL_FLAVOURS = ("reference", "cmsis-nn", "esp-nn")


@dataclass(frozen=True)
class TflmLibrary:
    """One version of one TFLM library for Arduino (facts of its tree, plus its registry id)."""

    id: str
    name: str  # Arduino Library Manager name = library.properties name= (exact spelling)
    version: str
    pio: str  # PlatformIO registry owner/name
    header: str  # main header (library.properties includes=)
    tflm_date: str  # YYYY-MM: the newest month the bundled TFLM snapshot can be from
    tflm_window: tuple[str, str | None] | None  # [first, last) day of that snapshot
    kernels: str  # reference | cmsis-nn | esp-nn
    ctor_required: tuple[str, ...]  # MicroInterpreter arena-constructor parameter types
    ctor_optional: tuple[str, ...]  # ... that have defaults
    architectures: tuple[str, ...]  # library.properties architectures= ("*" = all)
    resolver_methods: frozenset[str]  # MicroMutableOpResolver::Add* callable without args
    precompiled: str | None = None  # library.properties precompiled=
    notes: str = ""
    # FULLY_CONNECTED honours per-channel weight scales (kernels/fully_connected.h declares
    # is_per_channel); without it the kernel uses the first channel's scale for every output
    # -- a defect tinydeploy.tflm_overrides replaces the kernel for
    fc_per_channel: bool = True

    @property
    def lib_deps(self) -> str:
        """The pinned PlatformIO ``lib_deps`` entry, ``owner/name@X.Y.Z``."""
        return f"{self.pio}@{self.version}"

    @property
    def arduino_install(self) -> str:
        """``arduino-cli lib install`` argument pinned to this version: ``NAME@X.Y.Z``."""
        return f"{self.name}@{self.version}"

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"

    @property
    def ctor(self) -> str:
        """The constructor as text, optional parameters in brackets."""
        opt = "".join(f"[, {t}]" for t in self.ctor_optional)
        return f"MicroInterpreter({', '.join(self.ctor_required)}{opt})"

    @property
    def firmware_compatible(self) -> bool:
        """The generated firmware's ``MicroInterpreter(model, resolver, arena, size)``
        matches this library's constructor."""
        return self.ctor_required == FIRMWARE_CTOR

    def lacks(self, resolver_calls: list[str]) -> list[str]:
        """The ``Add*`` calls (in order) this library's resolver does not have."""
        return [m for m in resolver_calls if m not in self.resolver_methods]

    def arduino_compatible(self, architecture: str | None) -> bool:
        """Whether the Arduino IDE accepts the library on a core of this architecture
        without the "incompatible architecture" warning."""
        return "*" in self.architectures or architecture in self.architectures


def _load() -> dict[str, TflmLibrary]:
    path = Path(__file__).with_name("tflm_libraries.json")
    rows = json.loads(path.read_text(encoding="utf-8"))
    libs: dict[str, TflmLibrary] = {}
    for r in rows:
        window = tuple(r["tflm_window"]) if r.get("tflm_window") else None
        libs[r["id"]] = TflmLibrary(
            id=r["id"], name=r["name"], version=r["version"], pio=r["pio"], header=r["header"],
            tflm_date=r["tflm_date"], tflm_window=window,  # type: ignore[arg-type]
            kernels=r["kernels"], ctor_required=tuple(r["ctor_required"]),
            ctor_optional=tuple(r["ctor_optional"]), architectures=tuple(r["architectures"]),
            resolver_methods=frozenset(r["resolver_methods"]), precompiled=r.get("precompiled"),
            notes=r.get("notes", ""), fc_per_channel=bool(r.get("fc_per_channel", True)))
    return libs


@cache
def libraries() -> dict[str, TflmLibrary]:
    """Every library of the table by id."""
    return _load()


def get_library(lib_id: str) -> TflmLibrary:
    """The table entry ``lib_id``; ``TinyDeployError("bad_argument")`` if unknown."""
    libs = libraries()
    check_choice(lib_id, libs, "TFLM library")
    return libs[lib_id]


# --- checks and facts for the renderer --------------------------------------------------------
def check_boards(ops: list[tuple[str, str]], boards: list[Board], path: str,
                 candidates: Iterable[Board] = ()) -> None:
    """Refuse boards whose TFLM library the generated firmware cannot use.

    ``ops`` are the model's (operator name, ``MicroMutableOpResolver`` method) pairs;
    ``candidates`` the boards a refusal may suggest instead (the caller's board table: this
    module does not import :mod:`tinydeploy.boards`, which imports it). Raises
    ``TinyDeployError("unsupported_op")`` (exit 3) naming the first operator a board's
    library lacks, the board and the library; ``TinyDeployError("bad_argument")`` for a
    library whose ``MicroInterpreter`` constructor differs from the firmware's call.
    """
    candidates = list(candidates)
    for board in boards:
        lib = board.tflm_lib
        if lib is None:
            continue
        if not lib.firmware_compatible:
            raise TinyDeployError(
                "bad_argument", problem=f"board {board.id} uses TFLM library {lib.label} whose "
                f"constructor {lib.ctor} is not the MicroInterpreter(model, resolver, arena, "
                "size) the firmware calls",
                fix="name a library with that constructor in tinydeploy/boards.py "
                    f"({', '.join(i for i, x in libraries().items() if x.firmware_compatible)})")
        missing = [name for name, method in ops if method not in lib.resolver_methods]
        if missing:
            others = [b.id for b in candidates if b.tflm_lib and all(
                m in b.tflm_lib.resolver_methods for n, m in ops if n in missing)]
            where = f"use a board whose library has it ({', '.join(others)}) or " if others else ""
            raise TinyDeployError(
                "unsupported_op", path=path, op=", ".join(dict.fromkeys(missing)),
                runtime=f"{lib.label} (TFLite Micro of {lib.tflm_date}), the TFLM library of "
                        f"board {board.id}",
                fix=f"{where}replace the layer with one {lib.name} registers")


KERNEL_TEXT = {"reference": "reference (portable C++) kernels",
               "cmsis-nn": "CMSIS-NN kernels (Arm-optimized where the core has the DSP/MVE "
                           "instructions, their portable C path elsewhere)",
               "esp-nn": "ESP-NN kernels (optimized for the ESP32-S3)"}


def library_context(lib: TflmLibrary, boards: list[Board]) -> dict[str, object]:
    """What the generated README says about ``lib`` for ``boards`` (which use it)."""
    window = (f"{lib.tflm_window[0]} .. {lib.tflm_window[1]}"
              if lib.tflm_window and lib.tflm_window[1] else lib.tflm_date)
    warn = [{"board": b.id, "arch": b.arduino_arch} for b in boards
            if not lib.arduino_compatible(b.arduino_arch)]
    return {"id": lib.id, "arduino": lib.name, "version": lib.version,
            "install": lib.arduino_install, "lib_deps": lib.lib_deps, "label": lib.label,
            "tflm_date": lib.tflm_date, "tflm_window": window, "kernels": lib.kernels,
            "kernels_text": KERNEL_TEXT.get(lib.kernels, lib.kernels),
            "architectures": ", ".join(lib.architectures), "warnings": warn,
            "notes": lib.notes}
