"""Helpers every C-runtime emitter shares (``emit.py`` and the extension emitters
``emit_ext.py``, ``emit_gather.py``, ``emit_int16.py``, ``emit_lstm.py``): output sizes and
padding as TFLM's Prepare computes them, C arrays of constants, tensor pointer expressions,
per-channel multipliers and the fast kernels' filter layout. They sit below all emitters,
so none imports another for a helper.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import TinyDeployError
from . import quant
from .graph import FIX_TFLM, Graph, Op, Tensor

if TYPE_CHECKING:
    from .emit import Emitter

MAX_RANK = 6
SCRATCH_ID = 1 << 24  # buffer ids above the tensor indices


def c_array(name: str, ctype: str, values: Sequence[int] | np.ndarray) -> str:
    vals = [int(v) for v in np.asarray(values).reshape(-1)]
    if not vals:
        vals = [0]
    sfx = "u" if ctype.startswith("uint") else ""
    rows = [", ".join(f"{v}{sfx}" for v in vals[i:i + 20]) for i in range(0, len(vals), 20)]
    body = ",\n  ".join(rows)
    return f"static const {ctype} {name}[{len(vals)}] = {{\n  {body}\n}};"


def pad_fields(g: Graph, op: Op) -> dict[str, object]:
    """``td_pad_params`` of a PAD (any dtype): rank, dims padded to MAX_RANK, the leading
    paddings and TFLM's fill value (int8: the output zero point; int16: 0, whatever the zero
    point). Raises ``model_rejected`` for non-constant paddings or a rank above MAX_RANK."""
    x, y, pads = g.t(op.inputs[0]), g.t(op.outputs[0]), g.t(op.inputs[1])
    if pads.data is None or len(x.shape) > MAX_RANK:
        raise TinyDeployError("model_rejected", path=g.path,
                              problem="PAD needs constant paddings and rank <= 6", fix=FIX_TFLM)
    before = [int(v) for v in pads.data.reshape(-1, 2)[:, 0]]
    ins, outs = [int(v) for v in x.shape], [int(v) for v in y.shape]
    # an unpadded last axis joins the one before (NHWC padded in H, W: rows of W*C, not of
    # C): the same elements in the same increasing order, a few rows instead of pixels.
    # Axes 0..2 stay (the patch-based stages band axis 1, H, of an NHWC PAD).
    while len(ins) > 3 and ins[-1] == outs[-1] and not before[-1]:
        inner = ins.pop()
        outs.pop()
        before.pop()
        ins[-1], outs[-1], before[-1] = ins[-1] * inner, outs[-1] * inner, before[-1] * inner
    fill = [0] * (MAX_RANK - len(ins))
    return {"rank": len(ins), "in_dims": ins + fill, "before": before + fill,
            "out_dims": outs + fill, "pad_value": y.zp if y.dtype == "INT8" else 0}


def _pad_total(stride: int, dil: int, in_size: int, f: int, out_size: int) -> int:
    eff = (f - 1) * dil + 1
    return max(0, (out_size - 1) * stride + eff - in_size) // 2


def _out_size(padding: int, in_size: int, f: int, stride: int, dil: int) -> int:
    eff = (f - 1) * dil + 1
    if padding == 0:  # SAME
        return (in_size + stride - 1) // stride
    return (in_size - eff + stride) // stride


def _nhwc(t: Tensor) -> tuple[int, int, int, int]:
    s = list(t.shape)
    if len(s) != 4:
        raise ValueError(f"tensor '{t.name}' has shape {s}, expected 4-D NHWC")
    return s[0], s[1], s[2], s[3]


def interleave_rows(rows: np.ndarray) -> np.ndarray:
    """The fast kernels' filter layout (td_kernels.h): rows in groups of four, per group
    for each 4 columns the 4 bytes of each row, then each row's (K % 4)-byte tail; the
    out_c % 4 last rows as they are."""
    rows = np.asarray(rows).reshape(rows.shape[0], -1)
    n_rows, k = rows.shape
    k4 = k // 4 * 4
    parts = []
    for g in range(0, n_rows // 4 * 4, 4):
        grp = rows[g:g + 4]
        body = grp[:, :k4].reshape(4, k4 // 4, 4).transpose(1, 0, 2).reshape(-1)
        parts += [body, grp[:, k4:].reshape(-1)]
    parts.append(rows[n_rows // 4 * 4:].reshape(-1))
    return np.concatenate(parts) if parts else rows.reshape(-1)


def folded_bias(rows: np.ndarray | None, bias: Tensor | None, in_offset: int
                ) -> np.ndarray | None:
    """bias + in_offset * (sum of each filter row, one row per output channel): the
    kernels' fast paths then accumulate plain input * weight products (the same integer
    sums). None when the weights are not constant or a sum leaves int32 (the kernel then
    keeps its reference loop)."""
    if rows is None:
        return None
    sums = np.asarray(rows).astype(np.int64).reshape(len(rows), -1).sum(axis=1)
    b = (np.zeros(len(sums), np.int64) if bias is None or bias.data is None
         else bias.data.astype(np.int64).reshape(-1))
    out = b + in_offset * sums
    if np.any(np.abs(out) >= 2 ** 31):
        return None
    return out


# --- helpers ---------------------------------------------------------------------------
def _reject(g: Graph, problem: str) -> TinyDeployError:
    return TinyDeployError("model_rejected", path=g.path, problem=problem, fix=FIX_TFLM)


def _ptr(em: Emitter, i: int, dtype: str, const: bool) -> str:
    """Typed pointer expression for tensor i (activations, constants, I/O)."""
    t = em.g.t(i)
    if t.is_const:
        name = _const(em, t)
        ctype = {"INT8": "int8_t", "INT16": "int16_t", "INT32": "int32_t",
                 "INT64": "int64_t"}[t.dtype]
        return name if ctype == dtype else f"(const {dtype} *)(const void *){name}"
    expr = em.loc(i)
    if dtype == "int8_t":
        return expr
    return f"({'const ' if const else ''}{dtype} *)({'const ' if const else ''}void *){expr}"


def _ref(em: Emitter, i: int) -> str:
    """Tensor i as an expression: a constant array (any integer dtype) or its location."""
    t = em.g.t(i)
    return _const(em, t) if t.is_const else em.loc(i)


def _const(em: Emitter, t: Tensor) -> str:
    """A constant tensor as a C array (int8/int32 via the int8 emitter, int16/int64 here)."""
    if t.dtype in ("INT8", "INT32"):
        return em.const(t)
    if t.index not in em.const_names:
        ctype = {"INT16": "int16_t", "INT64": "int64_t"}.get(t.dtype)
        if ctype is None or t.data is None:
            raise _reject(em.g, f"constant '{t.name}' is {t.dtype}")
        vals = [int(v) for v in np.asarray(t.data).reshape(-1)] or [0]
        sfx = "LL" if ctype == "int64_t" else ""
        # INT64_MIN has no literal: write it as an expression
        lits = [f"({v + 1}{sfx} - 1)" if v == -(1 << 63) else f"{v}{sfx}" for v in vals]
        rows = [", ".join(lits[k:k + 16]) for k in range(0, len(lits), 16)]
        name = f"td_w{t.index}"
        em.decls.append(f"static const {ctype} {name}[{len(vals)}] = {{\n  "
                        + ",\n  ".join(rows) + "\n};")
        em.const_names[t.index] = name
        em.weight_bytes += len(vals) * (2 if ctype == "int16_t" else 8)
    return em.const_names[t.index]


def _per_channel(x: Tensor, w: Tensor, y: Tensor, n: int) -> tuple[list[int], list[int]]:
    """PopulateConvolutionQuantizationParams: double(in) * double(w) / double(out) per
    output channel."""
    scales = w.scales if len(w.scales) > 1 else w.scales * n
    pairs = [quant.quantize_multiplier(x.scale * s / y.scale) for s in scales]
    return [m for m, _ in pairs], [s for _, s in pairs]
