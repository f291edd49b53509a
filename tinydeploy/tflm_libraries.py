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
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .errors import TinyDeployError

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
            notes=r.get("notes", ""))
    return libs


@cache
def libraries() -> dict[str, TflmLibrary]:
    """Every library of the table by id."""
    return _load()


def get_library(lib_id: str) -> TflmLibrary:
    """The table entry ``lib_id``; ``TinyDeployError("bad_argument")`` if unknown."""
    libs = libraries()
    if lib_id not in libs:
        raise TinyDeployError("bad_argument", problem=f"unknown TFLM library {lib_id!r}",
                              fix=f"choose one of: {', '.join(libs)}")
    return libs[lib_id]
