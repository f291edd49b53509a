"""In-place / overlapping placement of an operator's output over its dying input.

The kernels write their output strictly in increasing flat order. If ``lo[o]`` is the
smallest input index read while computing output ``o`` (or any later output), then an
output placed ``d`` bytes below its input never overwrites an input byte still needed when

    d >= o + 1 - min(lo[o+1:])   for every output index o.

``overlap_distance`` returns the smallest such ``d`` for ops whose access pattern is known
(convolutions, pooling, element-wise ops, softmax, PAD); the planner then tries to place
the output exactly ``d`` bytes below the input (negative d: above).
"""

from __future__ import annotations

import numpy as np

from .graph import Graph, Op

_ELEMENTWISE = {"RELU", "RELU6", "LOGISTIC", "TANH", "QUANTIZE", "LEAKY_RELU", "HARD_SWISH",
                "SOFTMAX"}
_MAX_ELEMENTS = 1 << 20


def _first_valid(start: np.ndarray, dil: int, size: int) -> np.ndarray:
    """Smallest start + dil*k >= 0 (k >= 0), clipped to the input size."""
    neg = start < 0
    k = np.where(neg, (-start + dil - 1) // dil, 0)
    return np.minimum(start + k * dil, size - 1)


def _window_lo(op: Op, g: Graph) -> np.ndarray | None:
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    if len(x.shape) != 4 or len(y.shape) != 4:
        return None
    n, ih, iw, ic = x.shape
    _, oh, ow, oc = y.shape
    o = op.options
    sh, sw = int(o.strideH), int(o.strideW)
    if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        w = g.t(op.inputs[1])
        fh, fw = w.shape[1], w.shape[2]
        dh, dw = int(o.dilationHFactor or 1), int(o.dilationWFactor or 1)
    else:
        fh, fw, dh, dw = int(o.filterHeight), int(o.filterWidth), 1, 1
    from .emit_base import _pad_total

    ph, pw = _pad_total(sh, dh, ih, fh, oh), _pad_total(sw, dw, iw, fw, ow)
    b, yy, xx, cc = np.meshgrid(np.arange(n), np.arange(oh), np.arange(ow), np.arange(oc),
                                indexing="ij")
    iy = _first_valid(yy * sh - ph, dh, ih)
    ix = _first_valid(xx * sw - pw, dw, iw)
    if op.name == "CONV_2D":
        ch = np.zeros_like(cc)
    elif op.name == "DEPTHWISE_CONV_2D":
        ch = cc // max(oc // ic, 1)
    else:
        ch = cc
    return (((b * ih + iy) * iw + ix) * ic + ch).reshape(-1)


def _pad_lo(op: Op, g: Graph) -> np.ndarray | None:
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    pads = g.t(op.inputs[1])
    if pads.data is None or not x.shape:
        return None
    before = pads.data.reshape(-1, 2)[:, 0].astype(np.int64)
    idx = np.indices(y.shape).reshape(len(y.shape), -1) - before[:, None]
    inside = np.all((idx >= 0) & (idx < np.array(x.shape)[:, None]), axis=0)
    flat = np.ravel_multi_index(np.where(inside, idx, 0), x.shape)
    return np.where(inside, flat, np.iinfo(np.int64).max)


def read_lo(op: Op, g: Graph) -> np.ndarray | None:
    """Per output index, the smallest input index read (None: pattern unknown)."""
    y = g.t(op.outputs[0])
    if y.size > _MAX_ELEMENTS:
        return None
    if op.name in _ELEMENTWISE:
        return np.arange(y.size, dtype=np.int64)
    if op.name in ("ADD", "MUL"):
        a, b = g.t(op.inputs[0]), g.t(op.inputs[1])
        if a.shape != b.shape or a.size != y.size:
            return None
        return np.arange(y.size, dtype=np.int64)
    if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D"):
        return _window_lo(op, g)
    if op.name == "PAD":
        return _pad_lo(op, g)
    return None


def overlap_distance(op: Op, g: Graph) -> int | None:
    """Smallest d such that the output may start d bytes below the input (None: unknown)."""
    lo = read_lo(op, g)
    if lo is None or lo.size == 0:
        return None
    lo = lo.astype(np.int64)
    suffix = np.minimum.accumulate(lo[::-1])[::-1]
    need_next = np.append(suffix[1:], np.iinfo(np.int64).max)
    o = np.arange(lo.size, dtype=np.int64)
    return int(np.max(o + 1 - need_next))


# kernels that read input element i and then write output element i, in increasing i:
# the extension's (emit_ext.py: td_binary_ext, td_requantize_ext, td_leaky_relu_16) and
# DEQUANTIZE's (td_dequantize_lut, td_dequantize_16)
_EXT_FORWARD = frozenset({"ADD", "SUB", "MUL", "MAXIMUM", "MINIMUM", "LEAKY_RELU", "QUANTIZE"})
FORWARD_CORE = frozenset({"DEQUANTIZE"})


def ext_overlap_distance(op: Op, g: Graph) -> int | None:
    """Bytes an extension kernel's (or DEQUANTIZE's) output may start below its dying
    input: the pair-aware distance for a 16x8 CONV_2D; for an element-wise op without
    broadcast, n * (output - input element size) bytes when the output elements are wider
    (both then end at the same byte), else 0 -- output element i then covers input bytes of
    elements <= i only, all read already (rounded up to 8 bytes, the planner's alignment);
    None otherwise."""
    if op.name == "CONV_2D":
        return _conv16_distance(op, g)
    if op.name not in _EXT_FORWARD | FORWARD_CORE:
        return None
    y = g.t(op.outputs[0])
    n = 1 if op.name in ("LEAKY_RELU", "QUANTIZE", "DEQUANTIZE") else 2
    ins = [g.t(i) for i in op.inputs[:n] if i >= 0]
    if len(ins) != n or any(x.shape != y.shape or x.itemsize != ins[0].itemsize for x in ins):
        return None
    wider = y.size * max(0, y.itemsize - ins[0].itemsize)
    return (wider + 7) // 8 * 8


def _conv16_distance(op: Op, g: Graph) -> int | None:
    """Bytes for a 16x8 CONV_2D (int16 in and out). td_conv2d_16_fast computes output pixels
    in pairs (within a batch) and writes both pixels' channels interleaved, reading both
    windows until the pair's last write: every write of a pair must stay below the smallest
    input index still to be read from the pair's first pixel on (td_conv2d_16, one element
    after the other, needs no more). Rounded up to 8 bytes (the planner's alignment)."""
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    if x.dtype != "INT16" or y.dtype != "INT16" or y.size > _MAX_ELEMENTS or y.size == 0:
        return None
    lo = _window_lo(op, g)
    if lo is None:
        return None
    _, oh, ow, oc = y.shape
    npix = oh * ow
    pix = np.arange(y.size, dtype=np.int64) // oc
    batch_end = (pix // npix + 1) * npix
    start = pix - (pix % npix) % 2
    end = np.minimum(start + 2, batch_end)
    suffix = np.minimum.accumulate(lo.astype(np.int64)[::-1])[::-1]
    d = int(np.max(end * oc - suffix[start * oc]))
    return (2 * max(d, 0) + 7) // 8 * 8
