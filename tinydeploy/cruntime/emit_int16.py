"""Fast paths of the 16x8 CONV_2D and FULLY_CONNECTED kernels (int16 activations, int8
weights): the per-layer decisions and the filter layout of ``firmware/td_kernels_int16_fast.c``.

The kernels sum int8 x int16 products in int32 (SMLAD on Cortex-M4), which is exact only
when no partial sum can leave int32. The weights are known here, so each layer gets one of:

- ``wide = 0``: 32768 * sum|w| of every output channel fits in int32 (one int32 sum);
- ``wide = 1``: that holds for every filter row (f_w * in_c taps) of every channel
  (FULLY_CONNECTED: for every segment of a divisor of the row length): one int32 sum per
  row (segment), added up in int64;
- None: the int64 reference kernel of ``td_kernels_int16.c`` stays.

Inputs with a non-zero zero point (TFLM requires 0 for 16x8) keep the reference kernel too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .ctext import c_struct
from .graph import Graph, Op
from .variants import PAIRS16

if TYPE_CHECKING:
    from .emit import Emitter

__all__ = ["Conv16Plan", "accum_mode", "conv16_plan", "conv16_scratch_bytes", "dw16_rows",
           "emit_conv16", "emit_dw16", "emit_fc16", "fc16_fast", "fc16_seg", "fold_requant",
           "pair_layout"]

INT32_MAX = (1 << 31) - 1
X_ABS_MAX = 1 << 15  # |int16| <= 32768


def accum_mode(rows: np.ndarray, seg: int) -> int | None:
    """0 when one int32 sum per row of ``rows`` ([out_c, K] int8) is exact for any int16
    input, 1 when an int32 sum per ``seg`` consecutive weights is, else None."""
    a = np.abs(np.asarray(rows, dtype=np.int64)).reshape(len(rows), -1)
    if a.size == 0 or X_ABS_MAX * int(a.sum(axis=1).max()) <= INT32_MAX:
        return 0
    if a.shape[1] % seg == 0 and \
            X_ABS_MAX * int(a.reshape(len(a), -1, seg).sum(axis=2).max()) <= INT32_MAX:
        return 1
    return None


def pair_layout(rows: np.ndarray, seg: int) -> np.ndarray:
    """The fast kernels' filter layout: ``rows`` ([out_c, K] int8, K a multiple of seg) in
    output channel pairs (a, b) (an odd last channel paired with zeros); per pair and
    segment of seg weights: for each 4 k, a's [k0, k2, k1, k3] then b's; if seg & 2,
    [a_k, b_k, a_k+1, b_k+1]; if seg & 1, [a_k, b_k]."""
    r = np.asarray(rows, dtype=np.int8).reshape(len(rows), -1)
    if len(r) % 2:
        r = np.vstack([r, np.zeros((1, r.shape[1]), np.int8)])
    n_out, k = r.shape
    r = r.reshape(n_out // 2, 2, k // seg, seg)  # pair, channel in pair, segment, tap
    n4 = seg // 4 * 4
    parts = []
    body = r[..., :n4].reshape(n_out // 2, 2, k // seg, n4 // 4, 4)[..., [0, 2, 1, 3]]
    # -> pair, segment, group, channel in pair, 4 bytes
    parts.append(body.transpose(0, 2, 3, 1, 4).reshape(n_out // 2, k // seg, -1))
    if seg & 2:  # a_k, b_k, a_k+1, b_k+1
        parts.append(r[..., n4:n4 + 2].transpose(0, 2, 3, 1).reshape(n_out // 2, k // seg, 4))
    if seg & 1:
        parts.append(r[..., seg - 1].transpose(0, 2, 1).reshape(n_out // 2, k // seg, 2))
    return np.concatenate(parts, axis=2).reshape(-1)


def fold_requant(rows: np.ndarray, mults: list[int], shifts: list[int],
                 bias: np.ndarray | None, bias64: int) -> list[tuple[int, int, int]] | None:
    """Per output channel (B, R, T) with TFLM's 64-bit requantization of acc + bias equal to
    the low 32 bits of (acc * R + B) >> T: R the multiplier reduced to 16 bits, T = 15 -
    shift, B = bias * R + 2^(T - 1). None when that cannot be shown for every int32 sum of
    these weights (T outside 1..63, B near the int64 range), and for an int32 bias (TFLM
    then sums in int32 and requantizes with the 32-bit MultiplyByQuantizedMultiplier): the
    kernel then adds the bias and requantizes per output (td16_out_ref)."""
    if not bias64:
        return None
    bound = X_ABS_MAX * np.abs(np.asarray(rows, dtype=np.int64)).reshape(len(rows), -1).sum(1)
    out = []
    for c, (m, sh) in enumerate(zip(mults, shifts, strict=True)):
        b = 0 if bias is None else int(bias[c])
        r = (m + (1 << 15)) >> 16 if m < 0x7FFF0000 else 0x7FFF
        t = 15 - sh
        if not 1 <= t <= 63:
            return None
        folded = b * r + (1 << (t - 1))
        if abs(folded) + (int(bound[c]) + 1) * r >= 1 << 62:
            return None
        out.append((folded, r, t))
    return out


def _fold_fields(em: Emitter, op: Op, p: str, rows: np.ndarray, bias64: int
                 ) -> dict[str, object]:
    """``fold_bias``/``fold_mult``/``fold_shift`` of the fast kernels (0: not folded)."""
    from .emit_base import _per_channel

    g = em.g
    x, w, y = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    bias = g.t(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    mults, shifts = _per_channel(x, w, y, len(rows))
    vals = None if bias is not None and bias.data is None else \
        fold_requant(rows, mults, shifts, None if bias is None else
                     np.asarray(bias.data, dtype=np.int64).reshape(-1), bias64)
    if vals is None:
        return {"fold_bias": 0, "fold_mult": 0, "fold_shift": 0}
    lits = ", ".join(f"{b}LL" for b, _, _ in vals)
    em.decls.append(f"static const int64_t {p}_fold_bias[{len(vals)}] = {{{lits}}};")
    em.param_bytes += 8 * len(vals)
    return {"fold_bias": f"{p}_fold_bias",
            "fold_mult": em.int_array(p + "_fold_mult", [r for _, r, _ in vals]),
            "fold_shift": em.int_array(p + "_fold_shift", [t for _, _, t in vals])}


@dataclass(frozen=True)
class Conv16Plan:
    """A 16x8 CONV_2D on the fast path: ``wide`` (see the module), the filter rows
    [out_c, f_h * f_w * in_c], the segment length f_w * in_c and the im2col scratch bytes
    (two windows of int16; 0 when every window lies inside the input and dil_w is 1)."""

    wide: int
    rows: np.ndarray
    seg: int
    scratch: int


def conv16_plan(g: Graph, op: Op) -> Conv16Plan | None:
    """The fast path of a 16x8 CONV_2D, or None (depthwise, non-constant weights, input
    zero point, weights whose int32 sums could overflow: the reference kernel)."""
    from .emit_base import _out_size, _pad_total

    if op.name != "CONV_2D" or len(op.inputs) < 2:
        return None
    x, w, y = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    if x.dtype != "INT16" or y.dtype != "INT16" or w.dtype != "INT8" or w.data is None \
            or x.zp != 0 or len(w.shape) != 4 or len(x.shape) != 4 or len(y.shape) != 4 \
            or w.shape[3] != x.shape[3]:
        return None
    oc, fh, fw, ic = w.shape
    rows = np.asarray(w.data, dtype=np.int8).reshape(oc, -1)
    wide = accum_mode(rows, fw * ic)
    if wide is None:
        return None
    o = op.options
    _, ih, iw, _ = x.shape
    _, oh, ow, _ = y.shape
    sh, sw = int(o.strideH), int(o.strideW)
    dh, dw = int(o.dilationHFactor or 1), int(o.dilationWFactor or 1)
    if _out_size(int(o.padding), ih, fh, sh, dh) != oh or \
            _out_size(int(o.padding), iw, fw, sw, dw) != ow:
        return None  # the emitter refuses the model
    ph, pw = _pad_total(sh, dh, ih, fh, oh), _pad_total(sw, dw, iw, fw, ow)
    outside = ph > 0 or pw > 0 or (oh - 1) * sh - ph + (fh - 1) * dh >= ih \
        or (ow - 1) * sw - pw + (fw - 1) * dw >= iw
    scratch = 2 * 2 * fh * fw * ic if outside or dw != 1 else 0
    return Conv16Plan(wide, rows, fw * ic, scratch)


def conv16_scratch_bytes(g: Graph, op: Op) -> int:
    """Arena bytes of a 16x8 CONV_2D's im2col scratch (0: none or not the fast path)."""
    plan = conv16_plan(g, op)
    return plan.scratch if plan is not None else 0


def emit_conv16(em: Emitter, op: Op, p: str, fields: dict[str, object], bias64: int,
                scratch: str) -> str:
    """Declarations and the call of the fast 16x8 CONV_2D (``conv16_plan`` not None).

    Args:
        em: the emitter; op: the operator; p: its parameter name; fields: its
        ``td_conv_params`` fields (the filter field is replaced by 0: unused); bias64: 1
        for an int64 bias; scratch: the C expression of the im2col scratch ("0": none).

    Returns:
        The head of the call (the caller appends the input and output pointers).
    """
    plan = conv16_plan(em.g, op)
    if plan is None:  # pragma: no cover - the caller checked
        raise ValueError(f"op {op.index} is not on the 16x8 CONV_2D fast path")
    em.decls.append(c_struct("td_conv_params", p, {**fields, "filter": 0}))
    filt = em.weights(p + "_f16", pair_layout(plan.rows, plan.seg), PAIRS16)
    em.decls.append(c_struct("td_conv16_params", p + "_fast", {
        "p": f"&{p}", "filter": filt,
        "scratch": f"(int16_t *)(void *){scratch}" if plan.scratch else 0,
        "bias64": bias64, "wide": plan.wide,
        **_fold_fields(em, op, p, plan.rows, bias64)}))
    return f"td_conv2d_16_fast(&{p}_fast, "


def dw16_rows(g: Graph, op: Op) -> np.ndarray | None:
    """The filter rows [out_c, f_h * f_w] of a 16x8 DEPTHWISE_CONV_2D on the fast path
    (depth multiplier 1, input zero point 0, int32 sums exact), else None."""
    x, w, y = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    if op.name != "DEPTHWISE_CONV_2D" or x.dtype != "INT16" or w.dtype != "INT8" \
            or w.data is None or x.zp != 0 or len(w.shape) != 4 or len(x.shape) != 4 \
            or w.shape[3] != x.shape[3] or y.shape[-1] != x.shape[3]:
        return None
    _, fh, fw, oc = w.shape
    rows = np.asarray(w.data, dtype=np.int8).reshape(fh * fw, oc).T
    return rows if accum_mode(rows, fh * fw) == 0 else None


def emit_dw16(em: Emitter, op: Op, p: str, bias64: int) -> str:
    """Declarations and the call's head of the fast 16x8 DEPTHWISE_CONV_2D (``dw16_rows``
    not None; its ``td_conv_params`` ``p`` is declared by the caller)."""
    rows = dw16_rows(em.g, op)
    if rows is None:  # pragma: no cover - the caller checked
        raise ValueError(f"op {op.index} is not on the 16x8 DEPTHWISE_CONV_2D fast path")
    em.decls.append(c_struct("td_dw16_params", p + "_fast", {
        "p": f"&{p}", "bias64": bias64, **_fold_fields(em, op, p, rows, bias64)}))
    return f"td_depthwise_conv2d_16_fast(&{p}_fast, "


def fc16_seg(g: Graph, op: Op) -> int | None:
    """How many weights of a 16x8 FULLY_CONNECTED's row one int32 sum covers: the whole
    row (accum) when that is exact, else the largest divisor of accum (at least 8) for
    which it is (the segments' sums are added in int64); None when the fast kernel does not
    apply (zero points, non-constant weights, no such divisor): the reference loop."""
    x, w = g.t(op.inputs[0]), g.t(op.inputs[1])
    if w.dtype != "INT8" or w.data is None or len(w.shape) != 2 or w.zp != 0 or x.zp != 0:
        return None
    rows = np.asarray(w.data).reshape(w.shape[0], -1)
    n = rows.shape[1]
    if accum_mode(rows, n) == 0:
        return n
    for seg in range(n // 2, 7, -1):
        if n % seg == 0 and accum_mode(rows, seg) == 1:
            return seg
    return None


def fc16_fast(g: Graph, op: Op) -> bool:
    """Whether a 16x8 FULLY_CONNECTED runs the fast kernel (``fc16_seg`` not None)."""
    return fc16_seg(g, op) is not None


def emit_fc16(em: Emitter, op: Op, p: str, fields: dict[str, object], bias64: int) -> str:
    """Declarations and the call's head of the fast 16x8 FULLY_CONNECTED (``fc16_fast``)."""
    w = em.g.t(op.inputs[1])
    seg = fc16_seg(em.g, op)
    if seg is None:  # pragma: no cover - the caller checked
        raise ValueError(f"op {op.index} is not on the 16x8 FULLY_CONNECTED fast path")
    em.decls.append(c_struct("td_fc_params", p, {**fields, "filter": 0}))
    filt = em.weights(p + "_f16", pair_layout(np.asarray(w.data), seg), PAIRS16)
    em.decls.append(c_struct("td_fc16_params", p + "_fast", {
        "p": f"&{p}", "filter": filt, "bias64": bias64, "seg": seg,
        **_fold_fields(em, op, p, np.asarray(w.data).reshape(w.shape[0], -1), bias64)}))
    return f"td_fully_connected_16_fast(&{p}_fast, "
