"""Operators that only move elements, as one strided gather (``td_strided_slice`` in
``firmware/td_kernels_ext.c``): up to six (start, count, step, input stride) axes,
outermost first; output element (i0, .., i5) in row-major order is input element
sum((start[d] + i_d * step[d]) * stride[d]). ``copy_plan`` turns them into the kernel's
params (the innermost contiguous axes merged into one copy of ``run`` bytes).

* STRIDED_SLICE: TFLM's begin/end/strides and masks resolved to start/count/step;
* TRANSPOSE: output axis d walks input axis perm[d] (its stride);
* RESIZE_NEAREST_NEIGHBOR by an integer factor per axis: up-sampling repeats a row or
  column k times (a count-k axis of stride 0), down-sampling takes every k-th (from the
  first index TFLM picks: 0, or 1 with half-pixel centers); TFLM's own
  index arithmetic (float32) must give exactly that pattern, else the op is refused.

``gather_fields(g, op)`` returns the ``td_strided_slice_params`` fields; emit_ext.py emits
the call. A TRANSPOSE whose gather would copy single elements in short output rows while a
longer input axis is contiguous runs as ``td_permute`` instead (``permute_fields``): the
loops in input order, consecutive input elements scattered to the output (out of output
order: fine, the planner never places a TRANSPOSE over its input).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import TinyDeployError
from .emit_base import MAX_RANK
from .graph import FIX_TFLM, Graph, Op

__all__ = ["ES", "GATHER_OPS", "MAX_RANK", "copy_plan", "gather_fields", "permute_fields",
           "permute_plan", "slice_copy_plan"]

ES = {"INT8": 1, "INT16": 2, "INT32": 4}  # element size by dtype
GATHER_OPS = ("STRIDED_SLICE", "TRANSPOSE", "RESIZE_NEAREST_NEIGHBOR")


def _reject(g: Graph, problem: str) -> TinyDeployError:
    return TinyDeployError("model_rejected", path=g.path, problem=problem, fix=FIX_TFLM)


def _row_major(shape: tuple[int, ...]) -> list[int]:
    strides, acc = [0] * len(shape), 1
    for d in range(len(shape) - 1, -1, -1):
        strides[d] = acc
        acc *= shape[d]
    return strides


def copy_plan(axes: list[tuple[int, int, int, int]], es: int) -> dict[str, Any]:
    """td_strided_slice_params of (start, count, step, input stride in elements) axes,
    outermost first: the innermost axes that continue one contiguous run merge into one
    copy of ``run`` bytes, the next axis is the row loop, the others step the source in
    bytes (leading axes padded with count 1)."""
    byte_step = [a[2] * a[3] * es for a in axes]
    run, d = es, len(axes) - 1
    while d >= 0 and axes[d][2] == 1 and run == axes[d][3] * es:
        run = axes[d][1] * run
        d -= 1
    inner_n, inner_step = (axes[d][1], byte_step[d]) if d >= 0 else (1, run)
    outer = [(axes[i][1], byte_step[i]) for i in range(max(d, 0))]
    pad = MAX_RANK - 1 - len(outer)
    return {"base": sum(a[0] * a[3] for a in axes) * es, "run": run,
            "inner_n": inner_n, "inner_step": inner_step,
            "count": [1] * pad + [c for c, _ in outer], "step": [0] * pad + [s for _, s in outer]}


def slice_copy_plan(shape: list[int], start: list[int], count: list[int], step: list[int],
                    es: int) -> dict[str, Any]:
    """``copy_plan`` of a slice of a row-major tensor of ``shape``."""
    return copy_plan([(b, n, s, st) for b, n, s, st
                      in zip(start, count, step, _row_major(tuple(shape)), strict=True)], es)


def gather_fields(g: Graph, op: Op) -> dict[str, Any]:
    """``td_strided_slice_params`` of a STRIDED_SLICE, TRANSPOSE or RESIZE_NEAREST_NEIGHBOR;
    ``model_rejected`` for a form the gather cannot express."""
    x = g.t(op.inputs[0])
    if len(x.shape) > MAX_RANK:
        raise _reject(g, f"{op.name} rank {len(x.shape)} > {MAX_RANK}")
    axes = {"STRIDED_SLICE": _strided_slice, "TRANSPOSE": _transpose,
            "RESIZE_NEAREST_NEIGHBOR": _resize_nearest}[op.name](g, op)
    if len(axes) > MAX_RANK:
        raise _reject(g, f"{op.name} needs {len(axes)} gather axes > {MAX_RANK}")
    if g.t(op.outputs[0]).size == 0:
        raise _reject(g, f"{op.name} with an empty output")
    return copy_plan(axes, ES[x.dtype])


def _strided_slice(g: Graph, op: Op) -> list[tuple[int, int, int, int]]:
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    begin, end, strides = (g.t(i) for i in op.inputs[1:4])
    if any(t.data is None for t in (begin, end, strides)):
        raise _reject(g, "STRIDED_SLICE needs constant begin/end/strides")
    o = op.options
    if int(o.ellipsisMask or 0) or int(o.newAxisMask or 0):
        raise _reject(g, "STRIDED_SLICE with ellipsis_mask or new_axis_mask")
    bv = [int(v) for v in begin.data.reshape(-1)]
    ev = [int(v) for v in end.data.reshape(-1)]
    sv = [int(v) for v in strides.data.reshape(-1)]
    bm, em_, sm = int(o.beginMask or 0), int(o.endMask or 0), int(o.shrinkAxisMask or 0)
    offset = bool(getattr(o, "offset", False))
    axes = []
    for d, (n, stride) in enumerate(zip(x.shape, _row_major(x.shape), strict=True)):
        b_ = bv[d] if d < len(bv) else 0
        e_ = ev[d] if d < len(ev) else n
        s_ = sv[d] if d < len(sv) else 1
        if s_ == 0:
            raise _reject(g, "STRIDED_SLICE stride 0")
        if offset:
            e_ = b_ + e_
        if sm >> d & 1:  # TFLM: a begin_mask bit on a shrunk axis selects index 0
            b_ = 0 if bm >> d & 1 else b_
            k = b_ + n if b_ < 0 else b_
            axes.append((min(max(k, 0), n - 1), 1, 1, stride))
            continue
        lo, hi, st = slice(None if bm >> d & 1 else b_, None if em_ >> d & 1 else e_,
                           s_).indices(n)
        axes.append((lo, len(range(lo, hi, st)), st, stride))
    if int(np.prod([a[1] for a in axes])) != y.size:
        raise _reject(g, f"STRIDED_SLICE output size {y.size} does not match the slice "
                         f"{[a[1] for a in axes]}")
    return axes


def _transpose(g: Graph, op: Op) -> list[tuple[int, int, int, int]]:
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    perm_t = g.t(op.inputs[1])
    rank = len(x.shape)
    if perm_t.data is None:
        raise _reject(g, "TRANSPOSE needs a constant permutation")
    perm = [int(v) + rank if int(v) < 0 else int(v) for v in perm_t.data.reshape(-1)]
    if sorted(perm) != list(range(rank)):
        raise _reject(g, f"TRANSPOSE permutation {perm} of a rank-{rank} tensor")
    if tuple(x.shape[a] for a in perm) != tuple(y.shape):
        raise _reject(g, f"TRANSPOSE output shape {list(y.shape)} is not the input's "
                         f"{list(x.shape)} permuted by {perm}")
    strides = _row_major(x.shape)
    return [(0, x.shape[a], 1, strides[a]) for a in perm]


def permute_plan(shape: tuple[int, ...], perm: list[int], es: int) -> dict[str, Any] | None:
    """``td_permute_params`` of transposing a row-major ``shape`` by ``perm`` (output axis d
    = input axis perm[d]) with loops in input order, or None where ``copy_plan``'s gather is
    as good: its copies are runs of several elements, or its output rows are at least as
    long as the innermost input axis (of size > 1) the permutation would loop over."""
    axes = [(0, shape[a], 1, _row_major(shape)[a]) for a in perm]
    plan = copy_plan(axes, es)
    live = [a for a in range(len(shape)) if shape[a] > 1]
    if plan["run"] != es or not live or shape[live[-1]] <= plan["inner_n"]:
        return None
    out_stride = _row_major(tuple(shape[a] for a in perm))
    where = {a: d for d, a in enumerate(perm)}  # input axis -> output axis
    loops = [(shape[a], _row_major(shape)[a] * es, out_stride[where[a]] * es) for a in live]
    pad = [(1, 0, 0)] * (MAX_RANK - len(loops))
    return {"es": es, "count": [c for c, _, _ in pad + loops],
            "src_step": [s for _, s, _ in pad + loops],
            "dst_step": [d for _, _, d in pad + loops]}


def permute_fields(g: Graph, op: Op) -> dict[str, Any] | None:
    """``permute_plan`` of a TRANSPOSE (validated as ``gather_fields`` does), else None."""
    if op.name != "TRANSPOSE":
        return None
    gather_fields(g, op)  # the same refusals
    x = g.t(op.inputs[0])
    rank = len(x.shape)
    perm = [int(v) + rank if int(v) < 0 else int(v)
            for v in g.t(op.inputs[1]).data.reshape(-1)]
    return permute_plan(tuple(int(v) for v in x.shape), perm, ES[x.dtype])


def nearest_map(n_in: int, n_out: int, align: bool, half: bool) -> list[int]:
    """TFLM's GetNearestNeighbor for every output index (its float32 arithmetic)."""
    f32 = np.float32
    scale = f32(n_in - 1) / f32(n_out - 1) if align and n_out > 1 else f32(n_in) / f32(n_out)
    offset = f32(0.5) if half else f32(0.0)
    out = []
    for i in range(n_out):
        v = float((f32(i) + offset) * scale)
        k = int(np.floor(abs(v) + 0.5) * np.sign(v)) if align else int(np.floor(v))
        k = min(k, n_in - 1)
        out.append(max(k, 0) if half else k)
    return out


def _resize_nearest(g: Graph, op: Op) -> list[tuple[int, int, int, int]]:
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    size = g.t(op.inputs[1])
    if len(x.shape) != 4 or size.data is None \
            or [int(v) for v in size.data.reshape(-1)] != list(y.shape[1:3]):
        raise _reject(g, "RESIZE_NEAREST_NEIGHBOR needs a 4-D input and a constant size")
    if x.scales != y.scales or x.zero_points != y.zero_points:
        raise _reject(g, "RESIZE_NEAREST_NEIGHBOR with other output quantization")
    o = op.options
    _, row, col, _ = _row_major(x.shape)
    axes = [(0, x.shape[0], 1, x.shape[1] * row)]
    for n_in, n_out, stride in ((x.shape[1], y.shape[1], row), (x.shape[2], y.shape[2], col)):
        got = nearest_map(n_in, n_out, bool(o.alignCorners), bool(o.halfPixelCenters))
        if n_out % n_in == 0 and got == [i // (n_out // n_in) for i in range(n_out)]:
            axes += [(0, n_in, 1, stride), (0, n_out // n_in, 1, 0)]  # up: repeat
        elif n_in % n_out == 0 and got == [got[0] + i * (n_in // n_out) for i in range(n_out)]:
            axes.append((got[0], n_out, n_in // n_out, stride))  # down: every k-th
        else:
            raise _reject(g, f"RESIZE_NEAREST_NEIGHBOR {n_in} -> {n_out} is not an integer "
                             "factor the C runtime gathers")
    return [*axes, (0, x.shape[3], 1, 1)]
