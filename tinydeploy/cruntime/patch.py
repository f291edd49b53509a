"""Patch-based execution of a vision CNN's first stage (MCUNetV2-style), behind an option.

A stage is a range of int8 operators -- CONV_2D, DEPTHWISE_CONV_2D, MAX/AVERAGE_POOL_2D,
PAD and the element-wise ADD, SUB, MUL, MAXIMUM, MINIMUM (same shapes, both operands made
inside the stage: a residual block) -- from one input tensor to one output tensor. It runs
in ``bands`` row bands of its output: only the stage's input and output are whole; every
tensor inside lives in a band buffer holding the rows its readers need in the current band
(the hull over its readers, a skip connection read by two operators included).

Halo rows are carried, not recomputed: in band k every operator computes only the rows of
its output no earlier band computed; the rows of band k-1 still needed (the halo of the
next operator's window) are first moved to the top of the band buffer (``td_copy``,
forward, the source above the destination), then the producer writes its new rows below
them. Every row is computed exactly once, from the same inputs by the same arithmetic as
without bands (the kernels take explicit ``in_h``/``out_h``/``pad_h``, rows past ``in_h``
being padding; the element-wise kernels a ``size``), so the result is bit-exact and the
instructions are the unpatched ones plus the moves (``carried_bytes``) and a few per band
calls. Carrying always works here: every operator's input window moves down monotonically
with its output rows, so the rows a band needs start at or after the previous band's.
``recompute_macs_ratio`` (rows computed / rows of the whole tensors) is then 1.0, or less
where trailing rows no reader needs are skipped. The first band, whose receptive field is
the largest, is filled over several steps (each operator computing at most its share of
one band per step), so no band buffer holds more than a band's rows and its halo. The
stage's output may be placed over its input (``x_overlap``: each step writes output rows
only over input rows no later step reads), and the stage's convolutions share one im2col
scratch.

Chosen by the planner (``patch="auto"``, :mod:`.patch_auto`) or forced:
``generate_c(..., patch=(first_op, last_op, bands))``, ``--patch FIRST:LAST:BANDS``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import TinyDeployError
from .graph import Graph, Op
from .support import ext_reason

STAGE_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D",
                       "PAD"})
ELEMENTWISE = frozenset({"ADD", "SUB", "MUL", "MAXIMUM", "MINIMUM"})  # same shapes only
_CALL = re.compile(r"^(\w+)\(&(td_p\d+), (.*)\);$")

Rows = tuple[int, int]  # (first row, row count)


@dataclass
class Move:
    """Carry: ``size`` bytes of tensor ``t``'s band buffer from byte ``src`` to its top."""

    t: int
    src: int
    size: int


@dataclass
class Call:
    """One operator in one band: ``out_h`` new output rows (element-wise: ``size``
    elements) from ``in_h`` input rows, ``pad`` rows of top padding; the byte offsets of
    its inputs (``ins``) and its output (``out``) from their buffers' starts."""

    op: int
    in_h: int
    out_h: int
    pad: int
    ins: list[int]
    out: int
    size: int = 0


@dataclass
class Stage:
    """Operators ``ops`` from tensor ``x`` to ``y`` in ``bands`` row bands of y, run in
    ``steps`` steps (the first band may take several). Per step k, as (first row, row
    count): ``rows[k][t]`` = rows of t held (band buffer; x: read, y: written),
    ``new[k][t]`` = rows of t computed, ``reads[k][(op, j)]`` = rows op reads from its
    j-th input, ``moves[k][t]`` = rows moved up to the top of t's band buffer."""

    ops: list[int]
    x: int
    y: int
    bands: int
    rows: list[dict[int, Rows]] = field(default_factory=list)
    inner: list[int] = field(default_factory=list)  # intermediate tensors (band buffers)
    recompute_macs_ratio: float = 1.0
    new: list[dict[int, Rows]] = field(default_factory=list)
    reads: list[dict[tuple[int, int], Rows]] = field(default_factory=list)
    moves: list[dict[int, Rows]] = field(default_factory=list)
    carried_bytes: int = 0  # bytes moved up by the carries per inference
    # bytes y may start below x although both are live (x dying in the stage): every step
    # writes y's rows after the stage's reads of x, over x rows no later step reads
    # (None: the last operator reads x itself)
    x_overlap: int | None = None

    @property
    def first(self) -> int:
        return self.ops[0]

    @property
    def last(self) -> int:
        return self.ops[-1]

    @property
    def steps(self) -> int:
        """Iterations of the band loop (a band may take several: see ``_schedule``)."""
        return len(self.rows)

    def band_bytes(self, g: Graph, t: int) -> int:
        """The band buffer of intermediate tensor t: its most rows held in any step."""
        return max(r[t][1] for r in self.rows) * _row(g, t)


def act_inputs(op: Op) -> list[int]:
    """The inputs a stage operator reads in bands (the rest are constants)."""
    return op.inputs[:2] if op.name in ELEMENTWISE else op.inputs[:1]


def row_window(op: Op, g: Graph) -> tuple[int, int, int, int]:
    """(stride, filter height, dilation, top padding) along the rows."""
    from .emit_base import _pad_total

    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    o = op.options
    if op.name in ELEMENTWISE:
        return 1, 1, 1, 0
    if op.name == "PAD":
        pads = g.t(op.inputs[1]).data.reshape(-1, 2)
        return 1, 1, 1, int(pads[1, 0])  # a "filter" of one row below the padding
    if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        fh, dh = g.t(op.inputs[1]).shape[1], int(o.dilationHFactor or 1)
    else:
        fh, dh = int(o.filterHeight), 1
    sh = int(o.strideH)
    return sh, fh, dh, _pad_total(sh, dh, x.shape[1], fh, y.shape[1])  # top padding


def rows_needed(op: Op, g: Graph, r0: int, n: int) -> Rows:
    """Input rows (first, count) that output rows [r0, r0 + n) read (n > 0)."""
    s, fh, dh, pt = row_window(op, g)
    ih = g.t(op.inputs[0]).shape[1]
    a, b = r0 * s - pt, (r0 + n - 1) * s - pt + (fh - 1) * dh + 1
    a, b = max(a, 0), min(b, ih)
    return a, max(b - a, 0)


def _check(g: Graph, op: Op) -> str | None:
    """Why ``op`` cannot run in bands (None: it can)."""
    ins = act_inputs(op)
    ts = [g.t(i) for i in ins if i >= 0] + [g.t(op.outputs[0])]
    if op.name not in STAGE_OPS | ELEMENTWISE or len(ts) != len(ins) + 1 \
            or (op.name in STAGE_OPS and ext_reason(g, op) is None) \
            or any(t.dtype != "INT8" or len(t.shape) != 4 or t.shape[0] != 1 for t in ts):
        return "cannot run in bands"
    if op.name in ELEMENTWISE:
        if any(t.is_const for t in ts):
            return "has a constant operand"
        if any(t.shape != ts[-1].shape for t in ts):
            return "broadcasts"
    return None


def plan_stage(g: Graph, first: int, last: int, bands: int) -> Stage:
    """The stage's bands, halo rows carried (refuses operators or tensors it cannot band)."""
    def refuse(why: str) -> TinyDeployError:
        return TinyDeployError("bad_argument",
                               problem=f"patch stage {first}:{last}:{bands}: {why}",
                               fix=f"choose int8 {', '.join(sorted(STAGE_OPS | ELEMENTWISE))} "
                                   "operators from one input whose other outputs are read "
                                   "inside the stage only")

    if not 0 <= first <= last < len(g.ops) or bands < 1:
        raise refuse("operator range or band count out of range")
    ops = list(range(first, last + 1))
    made = {g.ops[k].outputs[0] for k in ops}
    outside: list[int] = []
    for k in ops:
        why = _check(g, g.ops[k])
        if why is not None:
            raise refuse(f"op {k} {g.ops[k].name} {why}")
        outside += [i for i in act_inputs(g.ops[k]) if i not in made and i not in outside]
    if len(outside) != 1:
        raise refuse(f"the stage reads {len(outside)} tensors from before it, not one")
    y = g.ops[last].outputs[0]
    inner = [g.ops[k].outputs[0] for k in ops[:-1]]
    for op in g.ops:
        for i in op.inputs:
            if i in inner and op.index not in ops:
                raise refuse(f"op {op.index} outside the stage reads tensor {i}")
    for t in inner:
        if t in g.outputs:
            raise refuse(f"tensor {t} inside the stage is a model output")
    stage = Stage(ops, outside[0], y, min(bands, g.t(y).shape[1]), inner=inner)
    _schedule(g, stage, refuse)
    return stage


MAX_STEPS = 4096  # steps of one stage (a stage making no progress is refused before)


def _schedule(g: Graph, stage: Stage, refuse: Callable[[str], TinyDeployError]) -> None:
    """Fill the stage's steps. Band b of the output takes one or more steps; in a step
    every operator, in order, computes the rows of its output no earlier step computed,
    up to what band b needs (``_required``), what its inputs hold by then and ``cap``
    rows (its share of one band: the first band's receptive field is then filled over
    several steps instead of held at once); the rows its readers still need are carried
    to the top of the band buffer at the start of the step, the rest dropped."""
    oh = g.t(stage.y).shape[1]
    band = -(-oh // stage.bands)
    ops = [g.ops[k] for k in stage.ops]
    height = {op.outputs[0]: g.t(op.outputs[0]).shape[1] for op in ops}
    cap = {t: max(1, -(-band * h // oh)) for t, h in height.items()}
    hi = dict.fromkeys(height, 0)  # rows [0, hi) of each output computed so far
    lo = dict.fromkeys(stage.inner, 0)  # first row held in each band buffer
    readers = {t: [op for op in ops if t in act_inputs(op)] for t in stage.inner}
    done = computed = 0
    for b in range(stage.bands):
        done += (oh - done) // (stage.bands - b)
        req = _required(g, ops, stage.y, done, hi)
        while hi[stage.y] < done:
            held: dict[int, Rows] = {}
            moves: dict[int, Rows] = {}
            for t in stage.inner:  # the rows still needed: from the readers' next window
                starts = [rows_needed(r, g, hi[r.outputs[0]], 1)[0] for r in readers[t]
                          if hi[r.outputs[0]] < height[r.outputs[0]]]
                first = min([*starts, hi[t]])
                if first < lo[t]:  # (cannot happen: windows move down monotonically)
                    raise refuse(f"tensor {t} would need rows an earlier band dropped")
                if lo[t] < first < hi[t]:
                    moves[t] = (first, hi[t] - first)
                lo[t] = first
            new: dict[int, Rows] = {}
            reads: dict[tuple[int, int], Rows] = {}
            for op in ops:
                t = op.outputs[0]
                end = min(height[t], req.get(t, hi[t]), hi[t] + cap[t])
                ins = act_inputs(op)
                while end > hi[t] and any(sum(rows_needed(op, g, 0, end)) > hi.get(i, 1 << 30)
                                          for i in ins):
                    end -= 1
                new[t] = (hi[t], end - hi[t])
                for j in range(len(ins)):
                    reads[(op.index, j)] = rows_needed(op, g, hi[t], end - hi[t]) if end > hi[t] \
                        else (0, 0)
                computed += (end - hi[t]) * _row(g, t)
                held[t] = new[t] if t == stage.y else (lo[t], end - lo[t])
                hi[t] = end
            if not any(n for _, n in new.values()) or len(stage.rows) >= MAX_STEPS:
                raise refuse("the band schedule makes no progress")
            xs = [reads[(op.index, j)] for op in ops for j, i in enumerate(act_inputs(op))
                  if i == stage.x and reads[(op.index, j)][1]]
            a = min((r[0] for r in xs), default=0)
            held[stage.x] = (a, max((r[0] + r[1] for r in xs), default=a) - a)
            stage.rows.append(held)
            stage.new.append(new)
            stage.reads.append(reads)
            stage.moves.append(moves)
            stage.carried_bytes += sum(m[1] * _row(g, t) for t, m in moves.items())
    whole = sum(g.t(t).nbytes for t in height)
    stage.recompute_macs_ratio = round(computed / max(whole, 1), 4)
    if stage.x not in act_inputs(ops[-1]):
        stage.x_overlap = _overlap(g, stage)


def _overlap(g: Graph, stage: Stage) -> int:
    """Smallest d such that y placed d bytes below x never overwrites an x byte a later
    step reads (step s writes y's bytes up to ``written`` after its own reads of x)."""
    d, later = -(1 << 30), 1 << 30
    for s in reversed(range(stage.steps)):
        r0, n = stage.new[s][stage.y]
        d = max(d, (r0 + n) * _row(g, stage.y) - later)
        a, c = stage.rows[s][stage.x]
        if c:
            later = min(later, a * _row(g, stage.x))
    return max(d, -g.t(stage.y).nbytes)


def _required(g: Graph, ops: list[Op], y: int, target: int, hi: dict[int, int]
              ) -> dict[int, int]:
    """Rows [0, req[t]) of each tensor the stage output's rows [0, target) need."""
    req = {y: target}
    for op in reversed(ops):
        r = max(req.get(op.outputs[0], 0), hi[op.outputs[0]])
        for i in act_inputs(op):
            if r > 0:
                req[i] = max(req.get(i, 0), sum(rows_needed(op, g, 0, r)))
    return req


def band_steps(g: Graph, stage: Stage, b: int) -> tuple[list[Move], list[Call]]:
    """Step b's carries (of every inner tensor, in ``stage.inner`` order, size 0 where
    none) and calls (in operator order), in the bytes the C block uses."""
    rows = stage.rows[b]

    def base(t: int) -> int:  # the row at the start of t's buffer (whole tensors: 0)
        return 0 if t in (stage.x, stage.y) else rows[t][0]

    prev = stage.rows[b - 1] if b else {}
    moves = []
    for t in stage.inner:
        first, n = stage.moves[b].get(t, (0, 0))
        moves.append(Move(t, (first - prev[t][0]) * _row(g, t) if n else 0, n * _row(g, t)))
    calls = []
    for k in stage.ops:
        op = g.ops[k]
        t = op.outputs[0]
        r0, m = stage.new[b][t]
        ins = []
        for j, i in enumerate(act_inputs(op)):
            a, c = stage.reads[b][(k, j)]
            ins.append((a - base(i)) * _row(g, i) if c else 0)
        s, _, _, pt = row_window(op, g)
        pad = max(pt - r0 * s, 0)
        in_h = stage.reads[b][(k, 0)][1]
        calls.append(Call(k, in_h, m, pad, ins, (r0 - base(t)) * _row(g, t) if m else 0,
                          m * _row(g, t)))
    return moves, calls


def _split_args(text: str) -> list[str]:
    """A C argument list split at its top-level commas."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return [*out, cur.strip()]


def stage_block(g: Graph, stage: Stage, calls: dict[int, str], loc: dict[int, str]) -> str:
    """The C block running the stage's calls band by band (``calls``: each operator's
    whole-tensor call as the emitters wrote it; ``loc``: tensor -> base pointer)."""
    steps = [band_steps(g, stage, b) for b in range(stage.steps)]
    carried = [j for j in range(len(stage.inner)) if any(s[0][j].size for s in steps)]
    table: list[list[int]] = []
    for moves, cs in steps:
        vals = [v for j in carried for v in (moves[j].size, moves[j].src)]
        for c in cs:
            vals += ([c.size, *c.ins, c.out] if g.ops[c.op].name in ELEMENTWISE
                     else [c.in_h, c.out_h, c.pad, c.ins[0], c.out])
        table.append(vals)
    lines = [f"{{ /* ops {stage.first}..{stage.last} in {stage.bands} row bands, {stage.steps} "
             f"steps (patch-based: halo rows carried, {stage.carried_bytes} B moved, "
             f"{stage.recompute_macs_ratio:.3f}x the outputs computed) */",
             f"    static const int32_t band[{stage.steps}][{len(table[0])}] = {{"
             + ", ".join("{" + ", ".join(map(str, r)) + "}" for r in table) + "};",
             "    int32_t k;",
             f"    for (k = 0; k < {stage.steps}; ++k) {{",
             "      const int32_t *v = band[k];"]
    col = 0
    for j in carried:
        buf = loc[stage.inner[j]]
        lines.append(f"      if (v[{col}] > 0) td_copy(v[{col}], {buf} + v[{col + 1}], {buf});"
                     f" /* carry tensor {stage.inner[j]} */")
        col += 2
    for k in stage.ops:
        lines.append(_banded_call(g, g.ops[k], calls[k], loc, col))
        col += 4 if g.ops[k].name in ELEMENTWISE else 5
    lines += ["    }", "  }"]
    return "\n".join(lines)


# (params type, the fields a band sets) of the windowed operators: one shared helper each
_HELPERS = {"td_conv_params": ("conv", "q.in_h = v[0]; q.out_h = v[1]; q.pad_h = v[2];"),
            "td_pool_params": ("pool", "q.in_h = v[0]; q.out_h = v[1]; q.pad_h = v[2];"),
            "td_pad_params": ("pad", "q.in_dims[1] = v[0]; q.out_dims[1] = v[1]; "
                                     "q.before[1] = v[2];")}


def _ctype(op: Op) -> str:
    if op.name == "PAD":
        return "td_pad_params"
    return "td_pool_params" if "POOL" in op.name else "td_conv_params"


def parse_call(op: Op, call: str) -> tuple[str, str, list[str]]:
    """(function, params, extra arguments) of an emitted whole-tensor call."""
    m = _CALL.match(call.strip())
    ins = act_inputs(op)
    args = _split_args(m.group(3)) if m is not None else []
    if m is None or len(args) < len(ins) + 1:
        raise TinyDeployError("bad_argument", problem=f"patch stage: op {op.index} ({op.name}) "
                              "has no banded form", fix="end the stage before it")
    return m.group(1), m.group(2), args[:len(args) - len(ins) - 1]  # tables, kind, size


def stage_decls(g: Graph, stage: Stage, calls: dict[int, str]) -> list[str]:
    """File-scope helpers the stage's block calls (one per params type: a band's copy of
    the parameters with its rows set, then the kernel; smaller code than per call)."""
    out = []
    for ctype, (kind, sets) in _HELPERS.items():
        if any(g.ops[k].name not in ELEMENTWISE and _ctype(g.ops[k]) == ctype
               and not parse_call(g.ops[k], calls[k])[2] for k in stage.ops):
            out.append(f"static void td_band_{kind}(void (*fn)(const {ctype} *, const int8_t *, "
                       f"int8_t *),\n    const {ctype} *p, const int32_t *v, const int8_t *in, "
                       f"int8_t *out) {{\n  {ctype} q = *p;\n  {sets}\n"
                       "  fn(&q, in + v[3], out + v[4]);\n}")
    return out


def _banded_call(g: Graph, op: Op, call: str, loc: dict[int, str], col: int) -> str:
    """Operator ``op``'s whole-tensor ``call`` on band columns ``v[col...]``."""
    fn, params, keep = parse_call(op, call)
    ins = act_inputs(op)
    if op.name in ELEMENTWISE:
        ptrs = [f"{loc[i]} + v[{col + 1 + j}]" for j, i in enumerate(ins)]
        ptrs.append(f"{loc[op.outputs[0]]} + v[{col + 1 + len(ins)}]")
        return (f"      if (v[{col}] > 0) {{ /* {op.index}: {op.name} */ td_binary_params q = "
                f"{params}; q.size = v[{col}];\n        {fn}(&q, "
                f"{', '.join([*keep, *ptrs])}); }}")
    kind, sets = _HELPERS[_ctype(op)]
    if not keep:
        return (f"      if (v[{col + 1}] > 0) /* {op.index}: {op.name} */\n        td_band_{kind}("
                f"{fn}, &{params}, v + {col}, {loc[ins[0]]}, {loc[op.outputs[0]]});")
    sets = re.sub(r"v\[(\d)\]", lambda m: f"v[{col + int(m.group(1))}]", sets)
    return (f"      if (v[{col + 1}] > 0) {{ /* {op.index}: {op.name} */ {_ctype(op)} q = "
            f"{params}; {sets}\n        {fn}(&q, "
            f"{', '.join(keep + [f'{loc[ins[0]]} + v[{col + 3}]'])}, "
            f"{loc[op.outputs[0]]} + v[{col + 4}]); }}")


def _row(g: Graph, t: int) -> int:
    _, _, w, c = g.t(t).shape
    return w * c
