"""The C runtime's memory plan: which bytes every tensor, scratch and band buffer gets.

``_storage`` turns the graph into planner buffers (aliases, the inputs and outputs inside
the plan, in-place pins, fusion, a patch stage's band buffers, FC streaming's scratch);
``_plan`` adds the convolutions' im2col scratch and places everything (planner.py);
``technique_savings`` and ``in_place_ops`` say what each technique saved for memory.json;
``Plans`` caches the plans of one model across patch-stage candidates (patch_auto.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from . import fc_stream
from .emit import scratch_bytes as core_scratch_bytes
from .emit_base import SCRATCH_ID
from .emit_ext import ALIAS_OPS, ext_reason, scratch_bytes
from .fusion import fusions
from .graph import Graph, Op
from .overlap import FORWARD_CORE, ext_overlap_distance, overlap_distance
from .patch import Stage
from .planner import Buffer, MemoryPlan, add_buffers, lower_bound, plan


@dataclass(frozen=True)
class Techniques:
    """The memory techniques the planner may use (all on in generated code; switched off
    one at a time to report what each saved, see :func:`technique_savings`)."""

    io: bool = True  # inputs and outputs inside the plan (else outside, not planned)
    alias: bool = True  # RESHAPE/SQUEEZE/EXPAND_DIMS outputs share their input's bytes
    in_place: bool = True  # outputs over their dying input (overlap.py, planner pins)
    fusion: bool = True  # RELU/RELU6 folded into the producing kernel (fusion.py)
    stage: Stage | None = None  # patch-based first stage (patch.py, patch_auto.py)
    streams: tuple[fc_stream.FcStream, ...] = ()  # FC inputs never stored (fc_stream.py)


def _storage(g: Graph, tech: Techniques = Techniques(),
             distances: dict[int, int | None] | None = None
             ) -> tuple[dict[int, int], list[Buffer]]:
    """Alias map (RESHAPE output -> root tensor) and the buffers the planner places
    (``distances``: the operators' in-place overlap distances known so far, filled in).

    The model's inputs and outputs are planned like any tensor: an input is live from the
    first operator (the application wrote it before ``td_invoke``) to its last reader, an
    output from its producer to the last operator (the application reads it afterwards)."""
    alias: dict[int, int] = {}
    external = set() if tech.io else set(g.inputs) | set(g.outputs)
    fused = fusions(g) if tech.fusion else {}
    for op in g.ops:
        if op.index in fused and op.outputs[0] not in external:  # shares the producer's
            alias[op.outputs[0]] = alias.get(op.inputs[0], op.inputs[0])
        elif op.name in ALIAS_OPS and tech.alias and op.outputs[0] not in external:
            src = op.inputs[0]
            if not g.t(src).is_const and not g.t(src).variable:
                alias[op.outputs[0]] = alias.get(src, src)
    for v, base in g.views.items():  # transposed views (transpose.py): the base's bytes
        alias[v] = alias.get(base, base)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    end = max(len(g.ops) - 1, 0)
    for i in g.inputs:
        r = alias.get(i, i)
        first[r], last[r] = 0, 0
    for op in g.ops:
        for i in op.outputs:
            r = alias.get(i, i)
            first.setdefault(r, op.index)
            last[r] = max(last.get(r, op.index), op.index)
        for i in op.inputs:
            if i < 0 or g.t(i).is_const:
                continue
            r = alias.get(i, i)
            last[r] = max(last.get(r, op.index), op.index)
    for i in g.outputs:
        r = alias.get(i, i)
        first.setdefault(r, 0)
        last[r] = end
    st = tech.stage
    if st is not None:  # whole input and output across the stage, its tensors in bands
        rx, ry = alias.get(st.x, st.x), alias.get(st.y, st.y)
        last[rx], first[ry] = max(last[rx], st.last), min(first[ry], st.first)
        for t in st.inner:
            first.pop(t, None)
    fc_stream.lifetimes(g, tech.streams, alias, first)
    buffers = {r: Buffer(r, g.t(r).name, g.t(r).nbytes, first[r], last[r])
               for r in sorted(first)
               if not g.t(r).variable and not g.t(r).is_const and r not in external}
    for t in st.inner if st is not None else []:
        buffers[t] = Buffer(t, g.t(t).name + " (band)", st.band_bytes(g, t), st.first, st.last)
    buffers.update((s.buffer_id, s.buffer()) for s in tech.streams)
    for op in g.ops:  # per-operator scratch (emit_ext.scratch_bytes), id SCRATCH_ID + op
        n = scratch_bytes(g, op)
        if n:
            buffers[SCRATCH_ID + op.index] = Buffer(SCRATCH_ID + op.index,
                                                    f"scratch of op {op.index}", n,
                                                    op.index, op.index)
    if st is not None and tech.in_place and st.x_overlap is not None and rx in buffers \
            and ry in buffers and last[rx] == st.last \
            and rx not in {alias.get(i, i) for i in g.outputs}:  # its output over its input
        buffers[ry].pin = (rx, st.x_overlap)
    for op in g.ops:  # outputs that may overlap the input they consume (overlap.py)
        y = op.outputs[0]
        y = alias[y] if y in g.views else y
        if not tech.in_place or y not in buffers or y in alias \
                or (st is not None and op.index in st.ops):
            continue
        ext = ext_reason(g, op) is None or op.name in FORWARD_CORE  # (overlap.py)
        binary = op.name in ("ADD", "MUL") or (ext and op.name in ("SUB", "MAXIMUM", "MINIMUM"))
        for i in op.inputs[:2] if binary else op.inputs[:1]:
            r = alias.get(i, i)
            if r in buffers and r != y and last[r] == op.index \
                    and g.t(r).size == g.t(i).size:
                known = distances if distances is not None else {}
                if op.index not in known:
                    known[op.index] = _distance(op, g)
                d = known[op.index]
                if d is not None:
                    buffers[y].pin = (r, d)
                break
    return alias, list(buffers.values())


def _distance(op: Op, g: Graph) -> int | None:
    """Bytes op's output may start below the input it consumes last (overlap.py)."""
    ext = ext_reason(g, op) is None or op.name in FORWARD_CORE
    return ext_overlap_distance(op, g) if ext else overlap_distance(op, g)


def _dies_at(g: Graph, tech: Techniques) -> dict[int, int]:
    """Operator -> its first input, where that operator is the input's last reader."""
    alias, buffers = _storage(g, tech)
    last = {b.tensor: b.last for b in buffers if b.tensor >= 0}
    return {op.index: op.inputs[0] for op in g.ops if op.inputs and op.inputs[0] >= 0
            and last.get(alias.get(op.inputs[0], op.inputs[0])) == op.index}


def _alignment(g: Graph, buffers: list[Buffer]) -> int:
    """8 where int16/int32 data or extension scratch is planned (kept aligned), else 1."""
    return 8 if any(SCRATCH_ID <= b.tensor < fc_stream.STREAM_ID  # (streams align their own)
                    or (0 <= b.tensor < SCRATCH_ID and g.t(b.tensor).itemsize > 1)
                    for b in buffers) else 1


def _plan(g: Graph, stage: Stage | None, speed_first: bool,
          distances: dict[int, int | None] | None = None,
          streams: tuple[fc_stream.FcStream, ...] = ()
          ) -> tuple[dict[int, int], list[Buffer], dict[int, int], MemoryPlan]:
    """Alias map, buffers, im2col columns and the memory plan of ``g`` (``distances``: see
    :func:`_storage`; ``streams``: fc_stream.py)."""
    alias, buffers = _storage(g, Techniques(stage=stage, streams=streams), distances)
    cols, mem = _plan_with_scratch(g, buffers, alignment=_alignment(g, buffers), stage=stage,
                                   pairs=speed_first)
    return alias, buffers, cols, mem


SCRATCH_MIN_SAVING = 64  # bytes (and 1/32 of the arena) one-pixel im2col must save


def _plan_joint(buffers: list[Buffer], scratch: list[Buffer], alignment: int) -> MemoryPlan:
    """The smaller of two plans: scratch placed with the tensors, or after them."""
    joint = plan([*(replace(b) for b in buffers), *(replace(b) for b in scratch)], alignment)
    after = add_buffers(plan([replace(b) for b in buffers], alignment),
                        [replace(b) for b in scratch])
    return joint if joint.size < after.size else after


def scratch_id(op: int, stage: Stage | None) -> int:
    """The operator whose scratch buffer ``op`` uses: a patch stage's operators share one
    (live across the stage, used by one call at a time)."""
    return stage.first if stage is not None and op in stage.ops else op


def _scratch_need(g: Graph) -> dict[int, tuple[int, int]]:
    """op -> im2col scratch bytes with one and with two pixels' receptive fields (core
    kernels; the extension's scratch is a buffer of ``_storage``)."""
    need = {op.index: (core_scratch_bytes(op, g, 1), core_scratch_bytes(op, g, 2))
            for op in g.ops if ext_reason(g, op) is not None}  # extension: scratch_bytes()
    return {i: n for i, n in need.items() if n[1] > 0}


def _scratch(need: dict[int, tuple[int, int]], cols: dict[int, int],
             stage: Stage | None = None) -> list[Buffer]:
    """The scratch buffers for ``cols`` pixels per operator (a patch stage's operators
    share one, live across the stage: one call at a time, see :func:`scratch_id`)."""
    staged = set(stage.ops) if stage is not None else set()
    out = [Buffer(-(i + 1), f"op {i} im2col scratch", need[i][c - 1], i, i)
           for i, c in cols.items() if need[i][c - 1] > 0 and i not in staged]
    shared = [need[i][c - 1] for i, c in cols.items() if i in staged]
    if stage is not None and max(shared, default=0) > 0:
        out.append(Buffer(-(stage.first + 1), f"ops {stage.first}..{stage.last} im2col "
                          "scratch (patch stage)", max(shared), stage.first, stage.last))
    return out


def _plan_with_scratch(g: Graph, buffers: list[Buffer], alignment: int = 1,
                       stage: Stage | None = None, pairs: bool = False
                       ) -> tuple[dict[int, int], MemoryPlan]:
    """The memory plan including the convolutions' im2col scratch: two pixels' receptive
    fields each (the faster kernel path), reduced to one where that makes the arena
    noticeably smaller (the scratch is live only during its operator, or its patch stage,
    but may raise the peak; a few bytes are not worth the slower one-pixel path);
    ``pairs``: keep two everywhere (the fuzzer's second plan, the fastest kernel paths)."""
    need = _scratch_need(g)

    def trial(cols: dict[int, int]) -> MemoryPlan:
        return _plan_joint(buffers, _scratch(need, cols, stage), alignment)

    cols = {i: 2 for i in need}
    mem = trial(cols)
    if need and not pairs:
        base = plan([replace(b) for b in buffers], alignment).size
        for i in sorted(need, key=lambda j: -need[j][1]):
            if mem.size <= base:
                break
            fewer = {**cols, i: 1}
            m = trial(fewer)
            if m.size < mem.size - max(SCRATCH_MIN_SAVING, mem.size // 32):
                cols, mem = fewer, m
    return cols, mem


def technique_savings(g: Graph, mem: MemoryPlan, scratch: list[Buffer],
                      stage: Stage | None = None, streams: tuple[fc_stream.FcStream, ...] = ()
                      ) -> dict[str, Any]:
    """What each memory technique saved: the plan made with all of them (``mem``) against
    the plan made without that one (RAM = arena, plus the inputs and outputs when they
    live outside it), and the live-tensor lower bound the planner started from (every
    tensor, the inputs and outputs included, in its own bytes while live: no alias, no
    in-place; the operators' scratch counted while they run)."""
    io_bytes = sum(g.t(i).nbytes for i in {*g.inputs, *g.outputs})
    _, plain = _storage(g, Techniques(alias=False, in_place=False, fusion=False))
    base = Techniques(stage=stage, streams=streams)
    start = lower_bound([*plain, *(replace(b) for b in scratch)], mem.alignment)
    saved: dict[str, int] = {}
    for key, tech in (("inputs_outputs_in_plan", replace(base, io=False)),
                      ("reshape_alias", replace(base, alias=False)),
                      ("in_place", replace(base, in_place=False)),
                      ("fusion", replace(base, fusion=False))):
        _, bufs = _storage(g, tech)
        size = _plan_joint(bufs, scratch, mem.alignment).size
        saved[key] = size + (0 if tech.io else io_bytes) - mem.size
    return {"live_tensor_lower_bound": start, "saved_bytes": saved}


def in_place_ops(g: Graph, mem: MemoryPlan, alias: dict[int, int]) -> list[dict[str, Any]]:
    """The operators whose output the plan put over bytes of an input they consume last."""
    by = {b.tensor: b for b in mem.buffers}
    out = []
    for op in g.ops:
        y = by.get(alias.get(op.outputs[0], op.outputs[0])) if op.outputs else None
        for i in op.inputs:
            x = by.get(alias.get(i, i)) if i >= 0 else None
            if x is not None and y is not None and x is not y and x.last == op.index \
                    and x.offset < y.offset + y.size and y.offset < x.offset + x.size:
                out.append({"op": op.index, "name": op.name, "dtype": g.t(y.tensor).dtype,
                            "over_tensor": x.tensor})
                break
    return out



class Plans:
    """The arena plans of one model without and with candidate patch stages, each made
    once (``patch_auto.Plans``)."""

    def __init__(self, g: Graph, pairs: bool) -> None:
        self.g, self.pairs = g, pairs
        self.need = _scratch_need(g)
        self.distances: dict[int, int | None] = {}  # in-place distances, the same for all
        self.made: dict[tuple[int, ...], tuple[dict[int, int], list[Buffer], dict[int, int],
                                               MemoryPlan]] = {}

    def storage(self, stage: Stage | None) -> tuple[list[Buffer], int]:
        """The buffers and alignment of the plan with ``stage``."""
        _, buffers = _storage(self.g, Techniques(stage=stage), self.distances)
        return buffers, _alignment(self.g, buffers)

    def plan(self, stage: Stage | None
             ) -> tuple[dict[int, int], list[Buffer], dict[int, int], MemoryPlan]:
        """What :func:`_plan` gives with ``stage``: the plan code generation uses."""
        key = (stage.first, stage.last, stage.bands) if stage is not None else ()
        if key not in self.made:
            self.made[key] = _plan(self.g, stage, self.pairs, self.distances)
        return self.made[key]

    def full(self, stage: Stage | None) -> int:
        return self.plan(stage)[3].size

    def quick(self, stage: Stage | None) -> int:
        buffers, align = self.storage(stage)
        return _plan_joint(buffers, _scratch(self.need, dict.fromkeys(self.need, 2), stage),
                           align).size

    def bound(self, stage: Stage | None) -> int:
        buffers, align = self.storage(stage)
        return lower_bound([*buffers, *_scratch(self.need, dict.fromkeys(self.need, 1), stage)],
                           align)

    def live(self) -> list[int]:
        buffers, _ = self.storage(None)
        return [sum(b.size for b in buffers if b.first <= k <= b.last)
                for k in range(len(self.g.ops))]
