"""Offline int8 LOGISTIC / TANH tables: the kernels' fixed-point arithmetic in Python.

An int8 LOGISTIC or TANH output depends on the input byte alone, so the generator evaluates
the exact integer algorithm of ``firmware/td_kernels.c`` (``td_logistic``/``td_tanh``:
gemmlowp-style Q-format exp, Newton-Raphson reciprocal, TFLM's rounding) for all 256 inputs
and the firmware only looks the result up (``td_lut8``). Every int32 operation is wrapped
to 32 bits the way the C code's is.
"""

from __future__ import annotations

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1


def _w(x: int) -> int:
    """Wrap to int32 (two's complement)."""
    return (x + (1 << 31)) % (1 << 32) - (1 << 31)


def _tdiv(a: int, b: int) -> int:
    """C integer division (truncation towards zero), b > 0."""
    q = abs(a) // b
    return q if a >= 0 else -q


def srdhm(a: int, b: int) -> int:
    if a == b == I32_MIN:
        return I32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return _w(_tdiv(ab + nudge, 1 << 31))


def rdbpot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return _w((x >> exponent) + (1 if (x & mask) > threshold else 0))


def mbqm(x: int, mult: int, shift: int) -> int:
    left, right = max(shift, 0), max(-shift, 0)
    return rdbpot(srdhm(_w(x << left), mult), right)


def _sat_shl(x: int, e: int) -> int:
    if e == 0:
        return x
    threshold = (1 << (31 - e)) - 1
    if x > threshold:
        return I32_MAX
    if x < -threshold:
        return I32_MIN
    return _w(x << e)


def _exp_on_interval(a: int) -> int:
    constant_term, one_third = 1895147668, 715827883
    x = _w(a + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    poly = rdbpot(_w(srdhm(_w(rdbpot(x4, 2) + x3), one_third) + x2), 1)
    return _w(constant_term + srdhm(constant_term, _w(x + poly)))


_K_MULT = (1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242)


def exp_on_negative_values(a: int, int_bits: int) -> int:
    frac = 31 - int_bits
    one_quarter = 1 << (frac - 2)
    amq = _w((a & (one_quarter - 1)) - one_quarter)
    result = _exp_on_interval(_sat_shl(amq, int_bits))
    remainder = _w(amq - a)
    for k, mult in enumerate(_K_MULT):
        exponent = k - 2
        if int_bits > exponent and remainder & _w(1 << (frac + exponent)):
            result = srdhm(result, mult)
    if int_bits > 5 and a < -(1 << (36 - int_bits)):
        result = 0
    return I32_MAX if a == 0 else result


def _nr_reciprocal(half_denominator: int) -> int:
    x = _w(1515870810 + srdhm(half_denominator, -1010580540))
    for _ in range(3):
        one_minus = _w((1 << 29) - srdhm(half_denominator, x))
        x = _w(x + _sat_shl(srdhm(x, one_minus), 2))
    return x


def _rounding_half_sum(a: int, b: int) -> int:
    s = a + b
    return _tdiv(s + (1 if s >= 0 else -1), 2)


def _logistic_q4(a: int) -> int:
    if a == 0:
        return 1 << 30
    e = exp_on_negative_values(_w(-abs(a)), 4)
    pos = _sat_shl(_nr_reciprocal(_rounding_half_sum(e, I32_MAX)), 1)
    return pos if a > 0 else _w(I32_MAX - pos)


def _tanh_q4(a: int) -> int:
    if a == 0:
        return 0
    n = a if a < 0 else _w(-a)
    x = _nr_reciprocal(_rounding_half_sum(exp_on_negative_values(n, 5), I32_MAX))
    t = _sat_shl(_w(x - (1 << 29)), 2)
    return _w(-t) if a < 0 else t


def sigmoid_lut(kind: str, in_zp: int, radius: int, mult: int, left_shift: int) -> list[int]:
    """The int8 output for every int8 input -128..127 of LOGISTIC (``kind`` "logistic")
    or TANH ("tanh"), parameters as ``quant.sigmoid_params`` computes them."""
    f, exponent, out_zp = ((_logistic_q4, 23, -128) if kind == "logistic"
                           else (_tanh_q4, 24, 0))
    out = []
    for q in range(-128, 128):
        x = q - in_zp
        if x <= -radius:
            out.append(-128)
        elif x >= radius:
            out.append(127)
        else:
            v = rdbpot(f(mbqm(x, mult, left_shift)), exponent) + out_zp
            out.append(min(127, max(-128, v)))
    return out
