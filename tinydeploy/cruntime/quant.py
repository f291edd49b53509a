"""Offline fixed-point parameters, computed exactly as TFLite Micro's kernel Prepare does.

Scales are float32 in the flatbuffer; TFLM widens them to double (or computes in float32
where its code does) before ``QuantizeMultiplier`` (frexp + round-half-away-from-zero of
the mantissa times 2^31). Python floats are IEEE doubles and ``math.frexp`` is C's frexp,
so the results are identical.
"""

from __future__ import annotations

import math

import numpy as np

INT8_MIN, INT8_MAX = -128, 127


def tf_round(x: float) -> int:
    """std::round: half away from zero."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def f32(x: float) -> float:
    """Round a double to float32 (the value a C ``float`` would hold)."""
    return float(np.float32(x))


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: real = m * 2^(shift - 31), m in [2^30, 2^31)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = tf_round(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return int(q_fixed), int(shift)


def frexp_multiplier(real: float) -> tuple[int, int]:
    """The LOGISTIC/TANH variant: frexp and round, without the 2^31 correction."""
    q, shift = math.frexp(real)
    return tf_round(q * (1 << 31)), shift


def input_radius(int_bits: int, left_shift: int, total_bits: int = 31) -> int:
    """CalculateInputRadius."""
    max_rescaled = (1.0 * ((1 << int_bits) - 1) * (1 << (total_bits - int_bits))
                    / (1 << left_shift))
    return int(math.floor(max_rescaled))


def quantize_value(value: float, scale: float, zero_point: int) -> int:
    """zero_point + round(value / scale) with the division in float32."""
    return zero_point + tf_round(f32(np.float32(value) / np.float32(scale)))


def activation_range(act: int, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8 (schema ActivationFunctionType codes)."""
    lo, hi = INT8_MIN, INT8_MAX
    if act == 0:  # NONE
        return lo, hi
    if act == 1:  # RELU
        return max(lo, quantize_value(0.0, scale, zero_point)), hi
    if act == 3:  # RELU6
        return (max(lo, quantize_value(0.0, scale, zero_point)),
                min(hi, quantize_value(6.0, scale, zero_point)))
    if act == 2:  # RELU_N1_TO_1
        return (max(lo, quantize_value(-1.0, scale, zero_point)),
                min(hi, quantize_value(1.0, scale, zero_point)))
    raise ValueError(f"fused activation {act} is not supported")


def softmax_params(beta: float, input_scale: float) -> tuple[int, int, int]:
    """(input_multiplier, input_left_shift, diff_min) for int8 softmax (5 integer bits)."""
    int_bits = 5
    real = min(beta * input_scale * (1 << (31 - int_bits)), float((1 << 31) - 1))
    mult, shift = quantize_multiplier(real)
    diff_min = -input_radius(int_bits, shift)
    return mult, shift, diff_min


def sigmoid_params(input_scale: float) -> tuple[int, int, int]:
    """(multiplier, left_shift, radius) for LOGISTIC/TANH int8 (4 integer bits)."""
    mult, shift = frexp_multiplier(input_scale * (1 << (31 - 4)))
    return mult, shift, input_radius(4, shift)


def downscale_to_int16(m: int) -> int:
    """DownScaleInt32ToInt16Multiplier."""
    if m >= (1 << 31) - 1 - (1 << 15):
        return 32767
    return (m + (1 << 15)) >> 16


def hard_swish_params(in_scale: float, out_scale: float) -> tuple[int, int, int, int]:
    """(out_mult16, out_exp, relu_mult16, relu_exp); float32 arithmetic as in TFLM."""
    hires = f32(np.float32(1.0 / 128.0) * np.float32(in_scale))
    reluish_scale = f32(np.float32(3.0) / np.float32(32768.0))
    out_m, out_e = quantize_multiplier(f32(np.float32(hires) / np.float32(out_scale)))
    rel_m, rel_e = quantize_multiplier(f32(np.float32(hires) / np.float32(reluish_scale)))
    return downscale_to_int16(out_m), out_e, downscale_to_int16(rel_m), rel_e


def leaky_relu_params(in_scale: float, out_scale: float, alpha: float) -> dict[str, int]:
    """td_leaky_relu_params multipliers (identity and alpha branch), float32 as in TFLM."""
    a = np.float32(alpha)
    ma, sa = quantize_multiplier(f32(np.float32(np.float32(in_scale) * a) / np.float32(out_scale)))
    mi, si = quantize_multiplier(f32(np.float32(in_scale) / np.float32(out_scale)))
    return {"mult_id": mi, "shift_id": si, "mult_alpha": ma, "shift_alpha": sa}


def mean_multiplier(in_scale: float, out_scale: float, count: int) -> tuple[int, int]:
    """MEAN: QuantizeMultiplier(in/out), then fold 1/count in as TFLM's reference does."""
    mult, shift = quantize_multiplier(in_scale / out_scale)
    s = count.bit_length() - 1  # 63 - clz64(count)
    s = min(s, 32, 31 + shift)
    mult = (mult << s) // count  # both non-negative: truncation == floor
    return int(mult), shift - s
