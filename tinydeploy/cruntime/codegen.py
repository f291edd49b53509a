"""Generate the interpreter-free C model: td_model.h/.c + the kernel library + memory.json.

``generate_c(facts, out_dir)`` reads the model into the IR, refuses unsupported models
before writing anything, plans the arena, emits one kernel call per operator, renders
``templates/c/*.jinja`` into a temporary folder and moves the files into place.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import jinja2

from ..errors import TinyDeployError
from ..facts import ModelFacts, load
from ..interface import interface_lines
from ..layers import op_macs
from ..log import log
from ..output import check_output_dir, staged_output
from ..resources import firmware_dir, templates_dir
from . import fc_stream
from .emit import ADD_LUT_MIN, Emitter, float_lit
from .emit import scratch_bytes as core_scratch_bytes
from .emit_base import SCRATCH_ID
from .emit_ext import (
    ALIAS_OPS,
    EXT_KERNEL_FILES,
    EXT_KERNEL_SOURCES,
    ext_reason,
    reserved_safe,
    scratch_bytes,
    sigmoid_table_decl,
    state_decls,
)
from .fusion import fusions
from .graph import Graph, Op, read_graph
from .overlap import FORWARD_CORE, ext_overlap_distance, overlap_distance
from .patch import Stage, stage_block, stage_decls
from .patch_auto import AUTO, OFF, PatchChoice, choose, parse_choice
from .planner import Buffer, MemoryPlan, add_buffers, lower_bound, plan
from .transpose import choose as choose_transposed
from .transpose import leader_decls, wrap

KERNEL_FILES = ("td_kernels.h", "td_simd.h", "td_kernels.c", "td_kernels_conv.c",
                "td_kernels_conv_ref.c", "td_kernels_dww.c",
                "td_kernels_gemm.c", "td_kernels_elem.c", "td_kernels_io.c", "td_kernels_pool.c",
                *EXT_KERNEL_FILES)
SUPPORT_FILES = ("td_protocol.h", "td_model_api.h")
MODEL_SOURCES = ("td_model.c", "td_kernels.c", "td_kernels_conv.c", "td_kernels_conv_ref.c",
                 "td_kernels_dww.c", "td_kernels_gemm.c", "td_kernels_elem.c",
                 "td_kernels_io.c", "td_kernels_pool.c",
                 *EXT_KERNEL_SOURCES)


@dataclass
class CResult:
    out_dir: Path
    files: list[Path]
    plan: MemoryPlan
    weight_bytes: int
    param_bytes: int
    n_ops: int
    tflm_arena_cortex_m: int | None = None
    min_arena_cm4: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    state_bytes: int = 0  # variable (state) tensors, outside the arena

    @property
    def sources(self) -> list[Path]:
        return [self.out_dir / f for f in MODEL_SOURCES]

    def memory(self) -> dict[str, Any]:
        d: dict[str, Any] = {"arena_bytes": self.plan.size, "lower_bound": self.plan.lower_bound,
                             "no_reuse_bytes": self.plan.naive, "weight_bytes": self.weight_bytes,
                             "param_bytes": self.param_bytes,
                             "tflm_arena_cortex_m": self.tflm_arena_cortex_m}
        if self.tflm_arena_cortex_m:
            d["ratio_vs_tflm"] = round(self.plan.size / self.tflm_arena_cortex_m, 4)
        d.update(self.extra)  # live_tensor_lower_bound, saved_bytes (technique_savings)
        d["ram_bytes"] = self.plan.size + self.state_bytes
        d["plan"] = self.plan.to_dict()
        return d

    def summary(self) -> str:
        tflm = (f", TFLM cortex-m arena {self.tflm_arena_cortex_m} B "
                f"(ratio {self.plan.size / self.tflm_arena_cortex_m:.2f})"
                if self.tflm_arena_cortex_m else "")
        return (f"C runtime: {self.n_ops} ops, static arena {self.plan.size} B "
                f"(lower bound {self.plan.lower_bound} B){tflm}, weights {self.weight_bytes} B, "
                f"params {self.param_bytes} B -> {self.out_dir}")


def c_identifier(name: str) -> str:
    """A valid C identifier from any string (used for names derived from user input) that
    is no C/C++ keyword or standard-library name (see ``emit_ext.reserved_safe``)."""
    s = re.sub(r"[^0-9A-Za-z_]", "_", name) or "model"
    return reserved_safe("_" + s if s[0].isdigit() else s)


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


def generator_digest() -> str:
    """SHA-256 of what turns a model into C here (these modules, ``templates/c``): a cached
    build made by another tinydeploy version must not pass for this one's."""
    h = hashlib.sha256()
    for path in [*sorted(Path(__file__).parent.glob("*.py")),
                 *sorted((templates_dir() / "c").glob("*.jinja"))]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()

def _comment(text: str) -> str:
    """Text safe inside a C block comment (tensor and file names come from the user)."""
    # no "*/" (ends the comment) and no "/*" (-Wcomment, an error with -Werror): Keras
    # allows "*" in layer names, and tensor names join them with "/"
    safe = re.sub(r"[^\x20-\x7e]", "?", text).replace("*/", "* /").replace("/*", "/ *")
    return safe[:120]


_DTYPES = {"INT8": "TD_DTYPE_INT8", "FLOAT32": "TD_DTYPE_FLOAT32", "INT16": "TD_DTYPE_INT16",
           "INT32": "TD_DTYPE_INT32"}


def _io_tensors(g: Graph, indices: list[int]) -> list[dict[str, Any]]:
    """Per-tensor facts for td_model.h/.c: offset and bytes inside the concatenated I/O."""
    out, off = [], 0
    for k, i in enumerate(indices):
        t = g.t(i)
        if off % t.itemsize:
            raise TinyDeployError(
                "model_rejected", path=g.path,
                problem=f"I/O tensor '{t.name}' ({t.dtype}) would start at byte {off} of the "
                        "concatenated tensors, not aligned to its element size",
                fix="reorder the model inputs/outputs (wider dtypes first) or use the TFLM "
                    "runtime")
        out.append({"k": k, "index": i, "offset": off, "bytes": t.nbytes,
                    "dtype": _DTYPES[t.dtype], "dims": list(t.shape) or [1],
                    "scale": float_lit(t.scale), "zp": t.zp, "quantized": bool(t.scales)})
        off += t.nbytes
    return out


@functools.lru_cache(maxsize=4)
def _environment(folder: str) -> jinja2.Environment:
    """The templates' environment, made once (compiling the templates costs ~20 ms, most of
    a small model's generation; jinja2 reloads a template whose file changed)."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(folder),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              autoescape=False)


class _Plans:
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


def build(facts: ModelFacts, name: str | None = None, patch: PatchChoice | None = AUTO,
          speed_first: bool = False, force_transposed: bool = False
          ) -> tuple[dict[str, str], CResult]:
    """Everything but the file writes: {filename: text} and the result (out_dir unset).
    ``patch``: ``"auto"`` (a patch-based first stage where it lowers the arena enough,
    :mod:`.patch_auto`), ``"off"`` or (first op, last op, bands) forced (:mod:`.patch`).
    ``speed_first``: every convolution keeps its pixel-pair scratch even where that raises
    the arena, and every int8 ADD takes the table kernel (the fuzzer builds half its models
    so: the paths the size-first choices leave out of small models). ``force_transposed``:
    every operator that can run transposed does (transpose.py; the fuzzer's share), not only
    where the arena shrinks (without a patch stage). A FULLY_CONNECTED is streamed
    (fc_stream.py) where that lowers the arena, never with ``speed_first``."""
    g = read_graph(facts)
    plans = _Plans(g, speed_first)
    choice = parse_choice(patch)
    decision = choose(g, choice, op_macs(facts) if choice != OFF else [], plans)
    stage = decision.stage
    transposed: dict[int, Any] = {}
    saved_tr = 0
    if stage is None:
        g, transposed, saved_tr = choose_transposed(
            g, _distance, lambda gg: _dies_at(gg, Techniques()),
            lambda gg: plans.full(None) if gg is plans.g else _plan(gg, None, speed_first)[3].size,
            force_transposed)
    alias, buffers, cols, mem = (_plan(g, None, speed_first) if transposed
                                 else plans.plan(stage))
    found = [] if speed_first else fc_stream.candidates(  # (not in a stage, not transposed)
        g, [*(stage.ops if stage is not None else ()), *transposed])
    known = plans.distances if g is plans.g else None
    streams, unstreamed = fc_stream.choose(
        g, found, lambda ss: _plan(g, stage, speed_first, known, ss)[3].size if ss else mem.size)
    if streams:
        alias, buffers, cols, mem = _plan(g, stage, speed_first, known, streams)
    scratch = {i: -(scratch_id(i, stage) + 1) for i in cols}
    offsets = {b.tensor: b.offset for b in mem.buffers}
    inputs, outputs = _io_tensors(g, g.inputs), _io_tensors(g, g.outputs)
    for t in (*inputs, *outputs):  # the planned buffer the application reads/writes
        t["arena_offset"] = offsets[alias.get(t["index"], t["index"])]

    io_loc = {alias.get(t["index"], t["index"]): f"TD_OUT({t['offset']}, {t['arena_offset']})"
              for t in outputs}  # TD_IO_BUFFERS builds: the caller's buffers (td_model.c)
    io_loc.update({alias.get(t["index"], t["index"]): f"TD_IN({t['offset']}, {t['arena_offset']})"
                   for t in inputs})

    def loc(i: int) -> str:
        r = alias.get(i, i)
        if r in io_loc:
            return io_loc[r]
        if i >= SCRATCH_ID:
            return f"(td_arena + {offsets[i]})"
        if g.t(r).variable:
            return f"((int8_t *)(void *)td_var{r})"
        return f"(td_arena + {offsets[r]})"

    def scratch_loc(op_index: int) -> tuple[str, int] | None:
        sid = scratch.get(op_index)
        if sid is None or sid not in offsets:  # none, or a 1x1 left on its raw input
            return None
        return f"(td_arena + {offsets[sid]})", cols[op_index]

    em = Emitter(g, loc, scratch_loc, add_lut_min=1 if speed_first else ADD_LUT_MIN)
    fused = fusions(g)
    em.clamp = {f.producer: (f.lo, f.hi) for f in fused.values()}
    streamed = {k: s for s in streams for k in s.ops}
    calls = [f"/* {op.index}: {op.name} */ " + (
        fc_stream.emit(em, streamed[op.index], op.index) if op.index in streamed
        else f"/* fused into op {fused[op.index].producer} */" if op.index in fused
        else em.emit(op)) for op in g.ops]
    extra: dict[str, Any] = {}
    if streams:
        extra["fc_streaming"] = fc_stream.describe(streams)
    for k, tr in transposed.items():
        em.decls.extend(leader_decls(tr))
        calls[k] = f"/* {k}: {g.ops[k].name} */ " + wrap(g, tr, calls[k].split("*/ ", 1)[1], loc)
    if transposed:
        extra["transposed_ops"] = sorted(transposed)
    if stage is not None:
        whole = {k: c.split("*/ ", 1)[1] for k, c in enumerate(calls) if k in stage.ops}
        ptrs = {t: loc(t) for t in (stage.x, stage.y, *stage.inner)}
        em.decls += stage_decls(g, stage, whole)
        for k in stage.ops:
            calls[k] = f"/* {k}: {g.ops[k].name} */ " + (
                stage_block(g, stage, whole, ptrs) if k == stage.first
                else "/* in the band loop above */")
        extra["patch"] = decision.report
        unpatched = plans.full(None)
        if unpatched <= mem.size:
            log.warning("patch stage ops %d..%d in %d bands: the arena is %d B, %d B more than "
                        "without it (halo rows and band buffers outweigh the saving here)",
                        stage.first, stage.last, stage.bands, mem.size, mem.size - unpatched)
    states = state_decls(g)
    if any(op.name == "UNIDIRECTIONAL_SEQUENCE_LSTM" for op in g.ops):
        em.decls.insert(0, sigmoid_table_decl())
    x, y = g.t(g.inputs[0]), g.t(g.outputs[0])
    model_name = c_identifier(name or facts.name)
    from .._version import __version__

    ctx = {
        "version": __version__, "source": _comment(Path(facts.path).name),
        "interface": [_comment(line) for line in interface_lines(facts)],
        "model_name": model_name, "sha256": facts.sha256,
        "sha256_bytes": ", ".join(str(b) for b in bytes.fromhex(facts.sha256)),
        "n_ops": len(g.ops), "arena": mem.size, "arena_alloc": max(mem.size, 1),
        "lower_bound": mem.lower_bound, "weight_bytes": em.weight_bytes,
        "buffers": [{"tensor": b.tensor, "name": _comment(b.name), "size": b.size,
                     "offset": b.offset, "first": b.first, "last": b.last}
                    for b in mem.buffers],
        "decls": em.decls, "calls": calls, "inputs": inputs, "outputs": outputs,
        "states": states, "stateful": bool(states),
        "has_lstm": any(op.name == "UNIDIRECTIONAL_SEQUENCE_LSTM" for op in g.ops),
        "input_size": sum(t["bytes"] for t in inputs),
        "output_size": sum(t["bytes"] for t in outputs),
        "in_dtype": _DTYPES[x.dtype], "out_dtype": _DTYPES[y.dtype],
        "in_dims": list(x.shape) or [1], "out_dims": list(y.shape) or [1],
        "in_scale": float_lit(x.scale), "in_zp": x.zp,
        "out_scale": float_lit(y.scale), "out_zp": y.zp,
        # every input/output tensor, for td_model_describe (the protocol's HELLO)
        "io": {side: [{"dtype": _DTYPES[t.dtype], "ndims": len(t.shape),
                       "dims": list(t.shape) or [0],  # rank 0: no dims (C99: one 0)
                       "scale": float_lit(t.scale), "zp": t.zp, "arena_offset": io["arena_offset"]}
                      for t, io in ((g.t(io["index"]), io) for io in ios)]
               for side, ios in (("inputs", inputs), ("outputs", outputs))},
    }
    env = _environment(str(templates_dir() / "c"))
    texts = {fname: env.get_template(fname + ".jinja").render(**ctx)
             for fname in ("td_model.h", "td_model.c")}
    result = CResult(out_dir=Path("."), files=[], plan=mem, weight_bytes=em.weight_bytes,
                     param_bytes=em.param_bytes, n_ops=len(g.ops),
                     extra={**technique_savings(g, mem, [b for b in mem.buffers
                                                         if b.tensor < 0], stage, streams),
                            "in_place_ops": in_place_ops(g, mem, alias),
                            "fused_ops": [asdict(f) for f in fusions(g).values()], **extra},
                     state_bytes=sum(s["size"] * g.t(s["index"]).itemsize for s in states))
    result.extra["saved_bytes"]["transposed"] = saved_tr  # (transpose.py)
    if found:  # the arena fc_stream.choose started from
        result.extra["saved_bytes"]["fc_streaming"] = unstreamed - mem.size
    return texts, result


def generate_c(facts: ModelFacts | str | Path | bytes, out_dir: Path,
               name: str | None = None,
               tflm_arena: Callable[[ModelFacts], int | None] | bool | None = None,
               owned: bool = False, patch: PatchChoice | None = AUTO) -> CResult:
    """Write the C runtime sources for ``facts`` into ``out_dir``; return paths + memory plan.
    ``owned``: own only the files written (``generate``; see
    :func:`tinydeploy.output.staged_output`), else replace same-named files (build folders).
    ``tflm_arena``: a function giving TFLM's Cortex-M arena for the model, to compare the
    static plan with in ``memory.json`` (the caller passes
    :func:`tinydeploy.arena.search.cortex_m_estimate`: the arena layer sits above this one);
    None or False: no comparison. ``patch``: see :func:`build`."""
    facts = load(facts)
    out_dir = check_output_dir(out_dir)
    texts, result = build(facts, name, patch)  # raises before anything is written
    if callable(tflm_arena):
        result.tflm_arena_cortex_m = tflm_arena(facts)
    with staged_output(out_dir, owned=owned) as tmp:
        for fname, text in texts.items():
            (tmp / fname).write_text(text)
        fw = firmware_dir()
        for fname in KERNEL_FILES + SUPPORT_FILES:
            if (fw / fname).is_file():
                shutil.copy2(fw / fname, tmp / fname)
        (tmp / "memory.json").write_text(json.dumps(result.memory(), indent=2) + "\n")
        names = sorted(p.name for p in tmp.iterdir())
    result.out_dir = out_dir
    result.files = [out_dir / n for n in names]
    log.info("%s", result.summary())
    return result
