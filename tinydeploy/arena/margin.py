"""The margin ``generate --arena auto`` adds to a Cortex-M prediction.

Layer 6 of :mod:`tinydeploy.arena` (choice), shared by :mod:`.search` (the figure ``arena``
reports as ``generate_bytes``) and :mod:`.plan` (the firmware's ``TD_ARENA_SIZE``).

* Modelled libraries (``reference``: TFLM 90b983c2; ``cmsis-nn``: Chirale_TensorFlowLite
  2.0.0): ``MODELLED_MARGIN`` (1 %, no rounding).
* Other libraries (``esp-nn``, unknown): ``UNMODELLED_MARGIN`` -- 25 %, at least 2 KiB,
  rounded up to 16 bytes.

The replay and the measurements use short enums (arm-none-eabi's default, and the flags of
the mbed and STM32 Arduino cores, :data:`tinydeploy.arduino_cores.CORE_SHORT_ENUMS`). For a
core compiled with ``-fno-short-enums``, or one whose flags are unknown, the margin is at
least :func:`int_enum_extra`: the worst case of what int-sized enums add -- the replay with
4-byte enums (``TfLiteTensor`` of the static-memory layout grows), each operator's parsed
options at their int-enum size and alignment, and one 16-byte step per kernel ``OpData``
(16-byte aligned; its enums widen).
"""

from __future__ import annotations

import math
from dataclasses import replace

from .graph import Graph
from .library import BUILTIN_DATA, FLAVOURS, builtin_data, opdata_bytes
from .replay import ALIGN, CORTEX_M, predict

MODELLED_MARGIN = 0.01
UNMODELLED_MARGIN = 0.25
UNMODELLED_MARGIN_MIN = 2 * 1024
TUNED_MARGIN = 16


def unmodelled_margin(arena_bytes: int) -> int:
    """An arena figure plus the 25 % / 2 KiB margin, rounded up to 16 bytes."""
    margin = max(UNMODELLED_MARGIN_MIN, math.ceil(arena_bytes * UNMODELLED_MARGIN))
    return -(-(arena_bytes + margin) // 16) * 16


def modelled_margin(arena_bytes: int) -> int:
    """The margin for a modelled library's prediction (bytes)."""
    return math.ceil(arena_bytes * MODELLED_MARGIN)


def with_margin(arena_bytes: int, flavour: str) -> int:
    """``arena_bytes`` plus the margin for a library of ``flavour``."""
    if flavour in FLAVOURS:
        return arena_bytes + modelled_margin(arena_bytes)
    return unmodelled_margin(arena_bytes)


def int_enum_extra(g: Graph) -> int:
    """Worst-case bytes int-sized enums (``-fno-short-enums``) add to the Cortex-M minimum
    of ``g`` (see the module docstring)."""
    wide = replace(CORTEX_M, name="cortex-m (int enums)", enum=4)
    extra = max(0, predict(g, wide)[0] - predict(g, CORTEX_M)[0])
    for op in g.ops:
        short = builtin_data(op.name, 0, g.flavour)
        big = BUILTIN_DATA.get(op.name, ((0, 1), (0, 1)))[1]  # x86-64: int enums, no pointers
        if short is not None:
            extra += max(0, big[0] - short[0]) + big[1] - 1
        if opdata_bytes(op.name, 0, g.flavour):
            extra += ALIGN
    return extra


def abi_margin(g: Graph, arena_bytes: int, short_enums: bool | None) -> int:
    """The modelled margin for a board whose core compiles with ``short_enums`` (True: the
    1 %; False / None: at least :func:`int_enum_extra`)."""
    margin = modelled_margin(arena_bytes)
    return margin if short_enums else max(margin, int_enum_extra(g))
