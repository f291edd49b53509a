"""Patch-based execution of a vision CNN's first stage (MCUNetV2-style), behind an option.

A chain of int8 CONV_2D / DEPTHWISE_CONV_2D / MAX/AVERAGE_POOL_2D / PAD operators whose
intermediate tensors are large runs band by band: the stage's output rows are split into
``bands`` row bands; for each band every operator computes just the rows the next one
needs (its input window's rows, the halo recomputed by neighbouring bands), into a small
band buffer instead of the whole intermediate tensor. Only the stage's input and output
stay whole. Every output element is computed from the same inputs by the same arithmetic
as without bands (the kernels take explicit ``in_h``/``out_h``/``pad_h``, rows past
``in_h`` being padding), so the result is bit-exact; the cost is the recomputed halo rows,
reported as ``recompute_macs_ratio``.

Chosen by the planner (``patch="auto"``, :mod:`.patch_auto`) or forced:
``generate_c(..., patch=(first_op, last_op, bands))``, ``--patch FIRST:LAST:BANDS``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import TinyDeployError
from .graph import Graph, Op
from .support import ext_reason

STAGE_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D",
                       "PAD"})
_ARG = r"(\([^,()]*\)|\w+|TD_(?:IN|OUT)\(\d+, \d+\))"  # a pointer as codegen.loc() writes it
_CALL = re.compile(rf"^(\w+)\(&(td_p\d+), {_ARG}, {_ARG}\);$")


@dataclass
class Stage:
    """Operators ``ops`` (a chain) from tensor ``x`` to ``y`` in ``bands`` row bands;
    ``rows[k][t]`` = (first row, row count) of tensor t computed / read in band k."""

    ops: list[int]
    x: int
    y: int
    bands: int
    rows: list[dict[int, tuple[int, int]]] = field(default_factory=list)
    inner: list[int] = field(default_factory=list)  # intermediate tensors (band buffers)
    recompute_macs_ratio: float = 1.0

    @property
    def first(self) -> int:
        return self.ops[0]

    @property
    def last(self) -> int:
        return self.ops[-1]

    def band_bytes(self, g: Graph, t: int) -> int:
        """The band buffer of intermediate tensor t: its most rows of any band."""
        _, _, w, c = g.t(t).shape
        return max(r[t][1] for r in self.rows) * w * c


def _window(op: Op, g: Graph) -> tuple[int, int, int, int]:
    """(stride, filter height, dilation, top padding) along the rows."""
    from .emit_base import _pad_total

    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    o = op.options
    if op.name == "PAD":
        pads = g.t(op.inputs[1]).data.reshape(-1, 2)
        return 1, 1, 1, -int(pads[1, 0])  # a "filter" of one row, negative padding
    if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        fh, dh = g.t(op.inputs[1]).shape[1], int(o.dilationHFactor or 1)
    else:
        fh, dh = int(o.filterHeight), 1
    sh = int(o.strideH)
    return sh, fh, dh, _pad_total(sh, dh, x.shape[1], fh, y.shape[1])  # top padding


def _need(op: Op, g: Graph, r0: int, n: int) -> tuple[int, int]:
    """Input rows (first, count) that output rows [r0, r0 + n) read."""
    s, fh, dh, pt = _window(op, g)
    ih = g.t(op.inputs[0]).shape[1]
    if op.name == "PAD":
        a, b = r0 + pt, r0 + n + pt  # pt = -rows before
    else:
        a, b = r0 * s - pt, (r0 + n - 1) * s - pt + (fh - 1) * dh + 1
    a, b = max(a, 0), min(b, ih)
    return a, max(b - a, 0)


def plan_stage(g: Graph, first: int, last: int, bands: int) -> Stage:
    """The stage's bands (refuses operators or tensors it cannot band)."""
    def refuse(why: str) -> TinyDeployError:
        return TinyDeployError("bad_argument",
                               problem=f"patch stage {first}:{last}:{bands}: {why}",
                               fix=f"choose a chain of int8 {', '.join(sorted(STAGE_OPS))} "
                                   "operators with one consumer each")

    if not 0 <= first <= last < len(g.ops) or bands < 1:
        raise refuse("operator range or band count out of range")
    ops = list(range(first, last + 1))
    readers: dict[int, int] = {}
    for op in g.ops:
        for i in op.inputs:
            readers[i] = readers.get(i, 0) + 1
    for k in ops:
        op = g.ops[k]
        x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
        if op.name not in STAGE_OPS or ext_reason(g, op) is None or x.dtype != "INT8" \
                or len(x.shape) != 4 or len(y.shape) != 4 or x.shape[0] != 1:
            raise refuse(f"op {k} {op.name} cannot run in bands")
        if k > first and op.inputs[0] != g.ops[k - 1].outputs[0]:
            raise refuse(f"op {k} does not read op {k - 1}'s output")
        if k < last and (readers.get(op.outputs[0]) != 1 or op.outputs[0] in g.outputs):
            raise refuse(f"op {k}'s output has other readers")
    x, y = g.ops[first].inputs[0], g.ops[last].outputs[0]
    oh = g.t(y).shape[1]
    bands = min(bands, oh)
    stage = Stage(ops, x, y, bands, inner=[g.ops[k].outputs[0] for k in ops[:-1]])
    done = 0
    for b in range(bands):
        n = (oh - done) // (bands - b)
        rows = {y: (done, n)}
        r0, cnt = done, n
        for k in reversed(ops):
            r0, cnt = _need(g.ops[k], g, r0, cnt)
            rows[g.ops[k].inputs[0]] = (r0, cnt)
        stage.rows.append(rows)
        done += n
    macs = banded = 0
    for k in ops:
        t = g.ops[k].outputs[0]
        _, h, w, c = g.t(t).shape
        macs += h * w * c
        banded += sum(r[t][1] for r in stage.rows) * w * c
    stage.recompute_macs_ratio = round(banded / max(macs, 1), 4)
    return stage


def stage_block(g: Graph, stage: Stage, calls: dict[int, str], loc: dict[int, str]) -> str:
    """The C block running the stage's calls band by band (``calls``: each operator's
    whole-tensor call as the emitters wrote it; ``loc``: tensor -> base pointer)."""
    table, lines = [], []
    for rows in stage.rows:
        vals = []
        for k in stage.ops:
            op = g.ops[k]
            xi, yi = op.inputs[0], op.outputs[0]
            (a, n), (r0, m) = rows[xi], rows[yi]
            s, _, _, pt = _window(op, g)
            pad = (max(-pt - r0, 0) if op.name == "PAD" else max(pt - r0 * s, 0))
            x_off = a * _row(g, xi) if xi == stage.x else 0
            y_off = r0 * _row(g, yi) if yi == stage.y else 0
            vals += [n, m, pad, x_off, y_off]
        table.append("{" + ", ".join(map(str, vals)) + "}")
    width = 5 * len(stage.ops)
    lines.append(f"{{ /* ops {stage.first}..{stage.last} in {stage.bands} row bands "
                 f"(patch-based, {stage.recompute_macs_ratio:.3f}x the outputs computed) */")
    lines.append(f"    static const int32_t band[{stage.bands}][{width}] = {{"
                 + ", ".join(table) + "};")
    lines.append("    int32_t k;")
    lines.append(f"    for (k = 0; k < {stage.bands}; ++k) {{")
    for j, k in enumerate(stage.ops):
        op = g.ops[k]
        m = _CALL.match(calls[k].strip())
        if m is None:
            raise TinyDeployError("bad_argument", problem=f"patch stage: op {k} ({op.name}) "
                                  "has no banded form", fix="end the stage before it")
        fn, params = m.group(1), m.group(2)
        xi, yi = op.inputs[0], op.outputs[0]
        b = f"band[k][{5 * j}]"
        if op.name == "PAD":
            ctype = "td_pad_params"
            sets = (f"q.in_dims[1] = {b}; q.out_dims[1] = band[k][{5 * j + 1}]; "
                    f"q.before[1] = band[k][{5 * j + 2}];")
        else:
            ctype = "td_pool_params" if "POOL" in op.name else "td_conv_params"
            sets = (f"q.in_h = {b}; q.out_h = band[k][{5 * j + 1}]; "
                    f"q.pad_h = band[k][{5 * j + 2}];")
        lines.append(f"      {{ /* {k}: {op.name} */ {ctype} q = {params}; {sets}")
        lines.append(f"        {fn}(&q, {loc[xi]} + band[k][{5 * j + 3}], "
                     f"{loc[yi]} + band[k][{5 * j + 4}]); }}")
    lines.append("    }")
    lines.append("  }")
    return "\n".join(lines)


def _row(g: Graph, t: int) -> int:
    _, _, w, c = g.t(t).shape
    return w * c
