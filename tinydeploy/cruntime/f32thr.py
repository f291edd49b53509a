"""Thresholds for td_quantize_f32_thr: TFLM's AffineQuantize of a float32 graph input to
int8 (clamp(round(v / scale) + zero_point), float32 division, rounding half away from
zero) without a division per value.

The result is monotonic in v, so it is -128 plus the number of thresholds at or below v.
Floats are compared as ordered int32 keys (``key``: the bit pattern, negative values with
their magnitude bits flipped), so the kernel needs no float arithmetic; each threshold is
found by bisection over the keys with the exact float32 arithmetic of the C code.
"""

from __future__ import annotations

import numpy as np

__all__ = ["key", "quantize_ref", "thresholds"]

_I32 = np.int64(0x7FFFFFFF)


def key(bits: np.ndarray) -> np.ndarray:
    """Ordered int64 keys of float32 bit patterns (td_f32_key; an involution on int32)."""
    s = bits.astype(np.uint32).view(np.int32).astype(np.int64)
    return np.where(s < 0, s ^ _I32, s)


def _floats(keys: np.ndarray) -> np.ndarray:
    k = keys.astype(np.int64)
    return np.where(k < 0, k ^ _I32, k).astype(np.int32).view(np.float32)


def quantize_ref(v: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """td_quantize_one for int8 (non-NaN ``v``): float32 division, round half away from
    zero (exact in float64 for a float32 quotient), + zero point, clamped."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        qf = (v.astype(np.float32) / np.float32(scale)).astype(np.float64)
    r = np.sign(qf) * np.floor(np.abs(qf) + 0.5)
    r = np.clip(np.nan_to_num(r, posinf=2.0**40, neginf=-(2.0**40)), -(2.0**40), 2.0**40)
    return np.clip(r + zero_point, -128, 127).astype(np.int64)


def thresholds(scale: float, zero_point: int) -> list[int]:
    """255 int32 keys: entry k is the smallest float key whose result is >= k - 127
    (that of -inf when every float reaches it, INT32_MAX when none does)."""
    lo_key = int(key(np.array([0xFF800000], dtype=np.uint32))[0])  # -inf
    hi_key = int(key(np.array([0x7F800000], dtype=np.uint32))[0])  # +inf
    target = np.arange(-127, 128, dtype=np.int64)
    lo = np.full(255, lo_key, dtype=np.int64)  # invariant: the answer is in [lo, hi]
    hi = np.full(255, hi_key + 1, dtype=np.int64)  # hi_key + 1: not reached
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        ok = quantize_ref(_floats(mid), scale, zero_point) >= target
        hi = np.where(ok & (lo < hi), mid, hi)
        lo = np.where(~ok & (lo < hi), mid + 1, lo)
    out = np.where(lo > hi_key, 2**31 - 1, lo)
    return [int(x) for x in out]
