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
from dataclasses import asdict, dataclass, field
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
from .emit_base import SCRATCH_ID
from .emit_ext import (
    EXT_KERNEL_FILES,
    EXT_KERNEL_SOURCES,
    reserved_safe,
    sigmoid_table_decl,
    state_decls,
)
from .fusion import fusions
from .graph import Graph, read_graph
from .memplan import (
    Plans,
    Techniques,
    _dies_at,
    _distance,
    _plan,
    in_place_ops,
    scratch_id,
    technique_savings,
)
from .patch import stage_block, stage_decls
from .patch_auto import AUTO, OFF, PatchChoice, choose, parse_choice
from .planner import MemoryPlan
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
                f"(lower bound {self.plan.lower_bound} B{self._techniques()}){tflm}, "
                f"weights {self.weight_bytes} B, params {self.param_bytes} B -> {self.out_dir}")

    def _techniques(self) -> str:
        """The plan's structural choices, for the summary line (memory.json has the rest)."""
        e, out = self.extra, []
        if e.get("patch"):
            p = e["patch"]
            out.append(f"patch stage ops {p['ops'][0]}..{p['ops'][1]} in {p['bands']} bands "
                       f"({p.get('chosen', 'forced')})")
        if e.get("transposed_ops"):
            out.append("transposed op " + ", ".join(map(str, e["transposed_ops"])))
        if e.get("fc_streaming"):
            out.append("FC streaming")
        return "; " + ", ".join(out) if out else ""


def c_identifier(name: str) -> str:
    """A valid C identifier from any string (used for names derived from user input) that
    is no C/C++ keyword or standard-library name (see ``emit_ext.reserved_safe``)."""
    s = re.sub(r"[^0-9A-Za-z_]", "_", name) or "model"
    return reserved_safe("_" + s if s[0].isdigit() else s)


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
    plans = Plans(g, speed_first)
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
