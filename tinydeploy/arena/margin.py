"""The margin ``generate --arena auto`` adds to a Cortex-M prediction.

Layer 6 of :mod:`tinydeploy.arena` (choice), shared by :mod:`.search` (the figure ``arena``
reports as ``generate_bytes``) and :mod:`.plan` (the firmware's ``TD_ARENA_SIZE``).

* Modelled libraries (``reference``: TFLM 90b983c2; ``cmsis-nn``: Chirale_TensorFlowLite
  2.0.0): ``MODELLED_MARGIN`` (1 %, no rounding).
* Other libraries (``esp-nn``, unknown): ``UNMODELLED_MARGIN`` -- 25 %, at least 2 KiB,
  rounded up to 16 bytes.
"""

from __future__ import annotations

import math

from .library import FLAVOURS

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
