"""UNIDIRECTIONAL_SEQUENCE_LSTM for the C runtime: TFLM's integer LSTM with int8
activations and weights, int16 cell state, int32 bias (``firmware/td_kernels_lstm.c``).

``support.lstm_problem`` says why a model's LSTM is outside that layout (None: inside);
``emit_lstm`` computes every gate's fully-connected multiplier (output Q3.12), the
inter-gate multipliers (Q0.15 gates), the cell-state tanh scaling and the quantized cell
clip as TFLM's Prepare does, and emits the call. The weights are laid out unit by unit
(each state unit's 4 gate rows interleaved, ``unit_rows``) with the input / hidden zero
points folded into per-gate biases; ``fast_requant_ok`` decides whether the kernel may use
its fast exact requantization. The hidden (int8) and cell (int16) state are variable
tensors: static arrays reset by td_reset() (codegen / ``state_decls``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from . import quant
from .emit_base import _ptr, _ref, _reject, c_array, folded_bias, interleave_rows
from .graph import Graph, Op, Tensor

if TYPE_CHECKING:
    from .emit import Emitter


def emit_lstm(em: Emitter, op: Op, p: str) -> str:
    """The td_lstm() call of ``op`` (parameters ``p``, arrays go to ``em.decls``).

    Raises TinyDeployError (model_rejected) for inconsistent shapes, a cell-state scale
    that is not a power of two or a folded bias outside int32."""
    g = em.g
    ins = op.inputs
    x, y = g.t(ins[0]), g.t(op.outputs[0])
    h, c = g.t(ins[18]), g.t(ins[19])
    o = op.options
    time_major = bool(o.timeMajor)
    batches = x.shape[1] if time_major else x.shape[0]
    steps = x.shape[0] if time_major else x.shape[1]
    n_in, n_state = x.shape[2], h.shape[-1]
    if y.dtype != "INT8" or y.size != batches * steps * n_state or h.size != batches * n_state:
        raise _reject(g, "LSTM output/state shapes do not match its input")
    f32 = np.float32
    gate_scale = f32(2.0 ** -12)

    def mult(src: Tensor, w: Tensor) -> tuple[int, int]:
        # GetQuantizedConvolutionMultipler: double(in) * double(w) / double(out)
        real = float(f32(src.scale)) * float(f32(w.scale)) / float(gate_scale)
        return quant.quantize_multiplier(real)

    # gate order here: 0 input, 1 forget, 2 cell, 3 output (schema: weights 1..4 / 5..8,
    # bias 12..15 in the same order)
    in_q = [mult(x, g.t(ins[1 + k])) for k in range(4)]
    rec_q = [mult(h, g.t(ins[5 + k])) for k in range(4)]
    w_in, b_in, bound_in = unit_rows(g, [g.t(ins[1 + k]) for k in range(4)],
                                     [g.t(ins[12 + k]) for k in range(4)], -x.zp)
    w_rec, b_rec, bound_rec = unit_rows(g, [g.t(ins[5 + k]) for k in range(4)], [None] * 4,
                                        -h.zp)
    arrays = (aligned_weights(em, p + "_w_in", w_in), aligned_weights(em, p + "_w_rec", w_rec),
              em.int_array(p + "_bias_in", b_in), em.int_array(p + "_bias_rec", b_rec))
    cs = float(f32(c.scale))
    out15 = float(f32(2.0 ** -15))

    def inter(s1: float, s2: float, so: float) -> tuple[int, int]:
        return quant.quantize_multiplier(s1 * s2 / so)

    fcm, fcs = inter(out15, cs, cs)
    icm, ics = inter(out15, out15, cs)
    om, os_ = inter(out15, out15, float(f32(h.scale)))
    # CheckedLog2 of the cell scale: round(log(x) * (1/log(2))) in float32
    log2 = f32(math.log(f32(c.scale))) * f32(1.0 / f32(math.log(f32(2.0))))
    power = quant.tf_round(float(log2))
    if abs(float(log2) - power) > 1e-3:
        raise _reject(g, f"LSTM cell state scale {c.scale} is not a power of two")
    tshift = 15 + power - 3
    tmult = 0
    if tshift < 0:
        tshift, tmult = -tshift, 3
    if tmult == 0:  # Tanh's power-of-two case
        tmult, tshift = 3 << tshift, 0
    clip_f = float(getattr(o, "cellClip", 0.0) or 0.0)
    clip = int(min(max(clip_f / cs, -32768.0), 32767.0)) if clip_f > 0 else 0

    # |gate output x cell|, |input x cell gate|, |tanh(cell) x output gate|: Q0.15 values
    # (sigmoid in [0, 32767], tanh in [-32768, 32767]) times an int16
    prod = 32767 * 32768
    rqs = [*zip(in_q, bound_in, strict=True), *zip(rec_q, bound_rec, strict=True),
           ((fcm, fcs), prod), ((icm, ics), prod), ((om, os_), prod)]
    fast = int(all(fast_requant_ok(b, m, s) for (m, s), b in rqs))
    if fast and all(s < 0 for (_, s), _ in rqs):
        fast = 2  # no left shift, a rounding divide in every requantization
    fields = (f"{batches}, {steps}, {n_in}, {n_state}, {int(time_major)},\n"
              f"  {', '.join(arrays)},\n"
              f"  {{ {', '.join(rq_init(m, s) for m, s in in_q)} }},\n"
              f"  {{ {', '.join(rq_init(m, s) for m, s in rec_q)} }},\n"
              f"  {rq_init(fcm, fcs)}, {rq_init(icm, ics)}, {rq_init(om, os_)},\n"
              f"  {STEP_FN[fast]}, {h.zp}, {tmult}, {tshift}, {clip}")
    em.decls.append(f"static const td_lstm_params {p} = {{\n  {fields}\n}};")
    return (f"td_lstm(&{p}, {_ref(em, ins[0])}, {em.loc(ins[18])}, "
            f"{_ptr(em, ins[19], 'int16_t', False)}, {em.loc(op.outputs[0])});")


# the kernel's step per requantization form: TFLM's, fast, fast with every shift negative
STEP_FN = ("td_lstm_step_any", "td_lstm_step_fast", "td_lstm_step_fast2")


def aligned_weights(em: Emitter, name: str, values: np.ndarray) -> str:
    """A constant int8 array, 4-byte aligned (the kernel reads each unit's rows as words:
    LDRD); returns the C expression of its first element's address."""
    body = c_array(name, "int8_t", values)
    init = body[body.index("= {") + 2:-1]  # "{ ... }"
    em.decls.append(f"static const union {{\n  int8_t b[{max(len(values), 1)}];\n"
                    f"  int32_t align;\n}} {name} = {{ {init} }};")
    em.weight_bytes += int(values.size)
    return f"{name}.b"


def rq_init(mult: int, shift: int) -> str:
    """C initializer of a td_lstm_rq: TFLM's multiplier and the fast form's constants."""
    rsh = max(-shift, 0)
    return (f"{{ {mult}, {shift}, {max(shift, 0) + 1}, {rsh}, {(1 << rsh) >> 1}, "
            f"{-1 if rsh else 0} }}")


def fast_requant_ok(bound: int, mult: int, shift: int) -> bool:
    """Whether the kernel's fast requantization (td_lstm_requant) equals TFLM's for every
    |x| <= bound: x * 2^(left+1) and the rounded high word plus the rounding constant
    stay within int32."""
    left, rsh = max(shift, 0), max(-shift, 0)
    if bound << (left + 1) >= 2 ** 31:
        return False
    hi = ((bound << left) * mult + 2 ** 30) >> 31
    return hi + 1 + ((1 << rsh) >> 1) < 2 ** 31


def unit_rows(g: Graph, weights: list[Tensor], biases: list[Tensor | None], in_offset: int
              ) -> tuple[np.ndarray, list[int], list[int]]:
    """The kernel's weight layout and folded biases of one FC per gate (4 [state][cols]
    weight tensors, 4 bias tensors or None): rows ordered unit by unit, each unit's 4 gate
    rows interleaved (``interleave_rows``); bias + in_offset * sum(row) in the same order;
    per gate the largest |accumulator| any int8 input can give (|bias| + 128 sum |w|).

    Raises TinyDeployError (model_rejected) when a folded bias leaves int32."""
    n_state = weights[0].shape[0]
    mats = [np.asarray(w.data).reshape(n_state, -1) for w in weights]
    rows = np.stack(mats, axis=1).reshape(4 * n_state, -1)  # row s*4+gate
    folded = [folded_bias(m, b, in_offset) for m, b in zip(mats, biases, strict=True)]
    if any(f is None for f in folded):
        raise _reject(g, "LSTM bias plus zero-point correction does not fit int32")
    bias = np.stack([np.asarray(f) for f in folded], axis=1)  # [state][gate]
    absw = np.stack([np.abs(m.astype(np.int64)).sum(axis=1) for m in mats], axis=1)
    bound = (np.abs(bias) + 128 * absw).max(axis=0)
    return interleave_rows(rows), [int(v) for v in bias.reshape(-1)], [int(v) for v in bound]
