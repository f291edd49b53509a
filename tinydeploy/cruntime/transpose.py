"""Transposed execution: run a convolution or pool on its tensors with H and W swapped.

An output can start only ``d`` bytes below the input it overwrites (overlap.py), and ``d``
depends on the order the kernel writes and reads rows. A convolution whose window covers
most of a short input's rows (seanet_conv0: a 7x7 window on 8 rows of 166 columns, 2 output
rows) keeps nearly every input row alive while it writes its first output row: ``d`` is
3,824 B of its 5,312-B input. Seen transposed (W as rows) the same window slides along 166
rows of 8 pixels, each output row retiring an input row: ``d`` is 32 B.

So: transpose the dying input in place (``td_transpose_px``: cycle following from leaders
computed here, no marks in RAM), run the operator on the transposed problem (the filter
transposed here, at generation time; strides, dilations and filter sizes swapped), and
transpose its output back in place. Integer sums are exact in any order, so the result is
bit-exact; the cost is two passes over the tensors. In ``TD_IO_BUFFERS`` builds (the
caller's buffers) a transposed model input is transposed back afterwards.

The graph gets new tensors for the transposed input, filter and output; ``Graph.views``
says whose bytes the input and output views are, so the planner places them over the
original tensors (codegen._storage). Chosen by codegen.build only when the plan shrinks.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from .graph import Graph, Op, Tensor

OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D"})
MAX_LEADERS = 1024  # uint16 leader table in flash
MIN_GAIN = 64  # bytes of overlap distance the transposed problem must save
MAX_CANDIDATES = 4


@dataclass(frozen=True)
class Transposed:
    """Operator ``op`` runs transposed: its input view ``x`` of tensor ``base_x``, output
    view ``y`` of ``base_y``; the leaders of both in-place transpositions."""

    op: int
    x: int
    base_x: int
    y: int
    base_y: int
    x_leaders: tuple[int, ...]
    y_leaders: tuple[int, ...]


def leaders(rows: int, cols: int) -> list[int]:
    """The smallest index of every cycle (longer than one) of the in-place transposition of
    a rows x cols matrix: the element landing at i = c * rows + r comes from r * cols + c."""
    n = rows * cols
    seen = bytearray(n)
    out = []
    for s in range(1, n - 1):
        if seen[s]:
            continue
        i, moved = s, False
        while True:
            seen[i] = 1
            j = (i % rows) * cols + i // rows
            if j == s:
                break
            i, moved = j, True
        if moved:
            out.append(s)
    return out


def _swap_hw(t: Tensor, index: int, data: np.ndarray | None = None) -> Tensor:
    n, h, w, c = t.shape
    return replace(t, index=index, shape=(n, w, h, c), data=data, name=t.name + " (transposed)")


def transposed_graph(g: Graph, k: int) -> tuple[Graph, Transposed] | None:
    """``g`` with operator k on H/W-swapped views of its tensors (None: not applicable)."""
    op = g.ops[k]
    if op.name not in OPS or not op.inputs or len(op.outputs) != 1:
        return None
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    if len(x.shape) != 4 or len(y.shape) != 4 or x.shape[0] != 1 or x.is_const \
            or x.variable or y.variable or min(x.shape[1:3]) < 2 or min(y.shape[1:3]) < 2 \
            or x.size >= 1 << 16 or y.size >= 1 << 16:
        return None
    lx, ly = leaders(x.shape[1], x.shape[2]), leaders(y.shape[1], y.shape[2])
    if len(lx) > MAX_LEADERS or len(ly) > MAX_LEADERS:
        return None
    n = len(g.tensors)
    tensors = [*g.tensors, _swap_hw(x, n), _swap_hw(y, n + 1)]
    inputs = [n, *op.inputs[1:]]
    o = copy.copy(op.options)
    if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        w = g.t(op.inputs[1])
        if w.data is None or len(w.shape) != 4:
            return None
        tensors.append(_swap_hw(w, n + 2, np.ascontiguousarray(np.transpose(w.data,
                                                                           (0, 2, 1, 3)))))
        inputs[1] = n + 2
        o.dilationHFactor, o.dilationWFactor = o.dilationWFactor, o.dilationHFactor
    else:
        o.filterHeight, o.filterWidth = o.filterWidth, o.filterHeight
    o.strideH, o.strideW = o.strideW, o.strideH
    ops = list(g.ops)
    ops[k] = Op(k, op.name, inputs, [n + 1], o)
    gv = Graph(tensors, ops, g.inputs, g.outputs, g.path,
               {**g.views, n: op.inputs[0], n + 1: op.outputs[0]})
    return gv, Transposed(k, n, op.inputs[0], n + 1, op.outputs[0], tuple(lx), tuple(ly))


def choose(g: Graph, distance: Callable[[Op, Graph], int | None],
           dies_at: Callable[[Graph], dict[int, int]], size: Callable[[Graph], int],
           force: bool = False) -> tuple[Graph, dict[int, Transposed], int]:
    """The graph with the operators worth transposing, their facts and the bytes saved.

    ``distance``: an operator's overlap distance as the planner computes it; ``dies_at``:
    operator index -> input tensor that operator reads last (the planner's lifetimes);
    ``size``: the arena of a graph. An operator is tried when its input dies there and the
    transposed problem's distance is at least MIN_GAIN smaller; kept when the arena shrinks
    (``force``: every applicable operator, kept whatever the arena -- the fuzzer's share)."""
    gain = -(1 << 30) if force else MIN_GAIN
    dying = dies_at(g)
    outs = set(g.outputs)
    gains: list[tuple[int, int]] = []
    views: dict[int, tuple[Graph, Transposed]] = {}
    for op in g.ops:
        if op.name not in OPS or dying.get(op.index) != op.inputs[0] or op.inputs[0] in outs:
            continue
        tv = transposed_graph(g, op.index)
        if tv is None:
            continue
        d0, d1 = distance(op, g), distance(tv[0].ops[op.index], tv[0])
        if d1 is not None and (d0 is None or d1 + gain <= d0):
            gains.append(((d0 or g.t(op.inputs[0]).nbytes) - d1, op.index))
            views[op.index] = tv
    chosen: dict[int, Transposed] = {}
    if not gains:
        return g, chosen, 0
    best = base = size(g)
    for _, k in sorted(gains, reverse=True)[:len(gains) if force else MAX_CANDIDATES]:
        tv = views[k] if not chosen else transposed_graph(g, k)  # (on the graph kept so far)
        if tv is None:
            continue
        s = size(tv[0])
        if s + gain <= best:
            g, best, chosen[k] = tv[0], s, tv[1]
    return g, chosen, base - best


def leader_decls(t: Transposed) -> list[str]:
    """The flash tables of the operator's two transpositions."""
    out = []
    for side, lead in (("x", t.x_leaders), ("y", t.y_leaders)):
        if lead:
            out.append(f"static const uint16_t td_tr{t.op}_{side}[{len(lead)}] = {{"
                       + ", ".join(map(str, lead)) + "};")
    return out


def wrap(g: Graph, t: Transposed, call: str, loc: Callable[[int], str]) -> str:
    """The operator's call between the in-place transpositions of its input and output."""
    x, y = g.t(t.x), g.t(t.y)
    px, py = x.shape[3] * x.itemsize, y.shape[3] * y.itemsize

    def tr(ptr: str, rows: int, cols: int, elem: int, side: str, n: int) -> str:
        return (f"td_transpose_px({ptr}, {rows}, {cols}, {elem}, td_tr{t.op}_{side}, {n});"
                if n else "")

    _, oh, ow, _ = y.shape  # the transposed problem's shapes: (W, H)
    _, xh, xw, _ = x.shape
    lines = ["{ /* run transposed: H and W swapped, in place (transpose.py) */",
             "    " + tr(loc(t.base_x), xw, xh, px, "x", len(t.x_leaders)),
             "    " + call,
             "    " + tr(loc(t.base_y), oh, ow, py, "y", len(t.y_leaders))]
    if t.base_x in g.inputs and t.x_leaders:  # the caller's buffer: give it back unchanged
        lines += ["#ifdef TD_IO_BUFFERS",
                  "    " + tr(loc(t.base_x), xh, xw, px, "x", len(t.x_leaders)),
                  "#endif"]
    lines.append("  }")
    return "\n".join(line for line in lines if line.strip())
