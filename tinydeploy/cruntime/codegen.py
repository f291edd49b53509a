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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jinja2

from ..errors import TinyDeployError
from ..facts import ModelFacts, load
from ..interface import interface_lines
from ..log import log
from ..output import check_output_dir, staged_output
from ..resources import firmware_dir, templates_dir
from .emit import ADD_LUT_MIN, Emitter, float_lit
from .emit import scratch_bytes as core_scratch_bytes
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
from .graph import Graph, read_graph
from .overlap import overlap_distance
from .planner import Buffer, MemoryPlan, add_buffers, plan

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


def _storage(g: Graph) -> tuple[dict[int, int], list[Buffer]]:
    """Alias map (RESHAPE output -> root tensor) and the buffers the planner places."""
    alias: dict[int, int] = {}
    external = set(g.inputs) | set(g.outputs)
    for op in g.ops:
        if op.name in ALIAS_OPS and op.outputs[0] not in external:
            src = op.inputs[0]
            if not g.t(src).is_const:
                alias[op.outputs[0]] = alias.get(src, src)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
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
    buffers = {r: Buffer(r, g.t(r).name, g.t(r).nbytes, first[r], last[r])
               for r in sorted(first) if r not in external and not g.t(r).variable}
    for op in g.ops:  # per-operator scratch (emit_ext.scratch_bytes), id SCRATCH_ID + op
        n = scratch_bytes(g, op)
        if n:
            buffers[SCRATCH_ID + op.index] = Buffer(SCRATCH_ID + op.index,
                                                    f"scratch of op {op.index}", n,
                                                    op.index, op.index)
    for op in g.ops:  # outputs that may overlap the input they consume (overlap.py)
        y = op.outputs[0]
        if y not in buffers or y in alias or ext_reason(g, op) is None:
            continue
        candidates = op.inputs[:2] if op.name in ("ADD", "MUL") else op.inputs[:1]
        for i in candidates:
            r = alias.get(i, i)
            if r in buffers and r != y and last[r] == op.index \
                    and g.t(r).size == g.t(i).size:
                d = overlap_distance(op, g)
                if d is not None:
                    buffers[y].pin = (r, d)
                break
    return alias, list(buffers.values())


SCRATCH_ID = 1 << 24  # buffer ids above the tensor indices


def _plan_with_scratch(g: Graph, buffers: list[Buffer], alignment: int = 1,
                       pairs: bool = False) -> tuple[dict[int, int], MemoryPlan]:
    """The memory plan including the convolutions' im2col scratch: two pixels' receptive
    fields each (the faster kernel path), reduced to one where that makes the arena
    smaller (the scratch is live only during its operator, but may raise the peak);
    ``pairs``: keep two everywhere (the fuzzer's second plan, the fastest kernel paths)."""
    need = {op.index: (core_scratch_bytes(op, g, 1), core_scratch_bytes(op, g, 2))
            for op in g.ops if ext_reason(g, op) is not None}  # extension: scratch_bytes()
    need = {i: n for i, n in need.items() if n[1] > 0}

    def scratch(cols: dict[int, int]) -> list[Buffer]:
        return [Buffer(-(i + 1), f"op {i} im2col scratch", need[i][c - 1], i, i)
                for i, c in cols.items() if need[i][c - 1] > 0]

    def trial(cols: dict[int, int]) -> MemoryPlan:
        joint = plan([*(replace(b) for b in buffers), *scratch(cols)], alignment)
        after = add_buffers(plan([replace(b) for b in buffers], alignment), scratch(cols))
        return joint if joint.size < after.size else after

    cols = {i: 2 for i in need}
    mem = trial(cols)
    if need and not pairs:
        base = plan([replace(b) for b in buffers], alignment).size
        for i in sorted(need, key=lambda j: -need[j][1]):
            if mem.size <= base:
                break
            fewer = {**cols, i: 1}
            m = trial(fewer)
            if m.size < mem.size:
                cols, mem = fewer, m
    return cols, mem


def _tflm_arena(facts: ModelFacts) -> int | None:
    try:
        from ..arena_search import arena  # helper module; optional
    except ImportError:
        return None
    try:
        return int(arena(facts, target="cortex-m").arena_bytes)
    except Exception as exc:  # an estimate only: never fail generation over it
        log.debug("TFLM arena estimate unavailable: %s", exc)
        return None



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


def build(facts: ModelFacts, name: str | None = None, speed_first: bool = False
          ) -> tuple[dict[str, str], CResult]:
    """Everything but the file writes: {filename: text} and the result (out_dir unset).
    ``speed_first``: every convolution keeps its pixel-pair scratch even where that raises
    the arena, and every int8 ADD takes the table kernel (the fuzzer builds half its models
    so: the paths the size-first choices leave out of small models)."""
    g = read_graph(facts)
    alias, buffers = _storage(g)
    wide = any(b.tensor >= SCRATCH_ID or (b.tensor >= 0 and g.t(b.tensor).itemsize > 1)
               for b in buffers)  # int16/int32 data and extension scratch stay aligned
    cols, mem = _plan_with_scratch(g, buffers, alignment=8 if wide else 1,
                                   pairs=speed_first)
    scratch = {i: -(i + 1) for i in cols}
    offsets = {b.tensor: b.offset for b in mem.buffers}
    inputs, outputs = _io_tensors(g, g.inputs), _io_tensors(g, g.outputs)
    io_loc = {t["index"]: f"(in + {t['offset']})" if t["offset"] else "in" for t in inputs}
    io_loc.update({t["index"]: f"(out + {t['offset']})" if t["offset"] else "out"
                   for t in outputs})

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
    calls = [f"/* {op.index}: {op.name} */ " + em.emit(op) for op in g.ops]
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
                       "scale": float_lit(t.scale), "zp": t.zp}
                      for t in (g.t(i) for i in ids)]
               for side, ids in (("inputs", g.inputs), ("outputs", g.outputs))},
    }
    env = _environment(str(templates_dir() / "c"))
    texts = {fname: env.get_template(fname + ".jinja").render(**ctx)
             for fname in ("td_model.h", "td_model.c")}
    result = CResult(out_dir=Path("."), files=[], plan=mem, weight_bytes=em.weight_bytes,
                     param_bytes=em.param_bytes, n_ops=len(g.ops))
    return texts, result


def generate_c(facts: ModelFacts | str | Path | bytes, out_dir: Path,
               name: str | None = None, tflm_arena: bool = True, owned: bool = False,
               ) -> CResult:
    """Write the C runtime sources for ``facts`` into ``out_dir``; return paths + memory plan.
    ``owned``: own only the files written (``generate``; see
    :func:`tinydeploy.output.staged_output`), else replace same-named files (build folders)."""
    facts = load(facts)
    out_dir = check_output_dir(out_dir)
    texts, result = build(facts, name)  # raises before anything is written
    if tflm_arena:
        result.tflm_arena_cortex_m = _tflm_arena(facts)
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
