"""One fuzz case: a built model with its samples, the host reference's outputs and the C
runtime's generated source (``prepare``), the byte-for-byte comparison (``compare``) and the
files a mismatch is saved as (``save_case``)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cruntime.codegen import build as build_c
from ..cruntime.graph import Graph, read_graph
from ..cruntime.patch import plan_stage
from ..errors import TinyDeployError
from ..facts import load
from ..log import log
from .host import HostRef
from .models import Built, inputs
from .paths import LayerPath, classify
from .targets import Case

__all__ = ["SAMPLES", "Prepared", "compare", "prepare", "sample_bytes", "save_case",
           "patched_first", "random_stage", "speed_first", "transposed_first"]

SAMPLES = 4


@dataclass
class Prepared:
    """A model ready to run: its case, the expected output bytes and its coverage rows."""

    built: Built
    samples: list[list[np.ndarray]]
    case: Case
    expected: bytes
    layers: list[LayerPath]
    out_dtypes: list[tuple[str, int]]  # per output tensor: dtype, bytes


def speed_first(seed: int) -> bool:
    """Whether model ``seed`` is generated speed-first (half of them, by a hash)."""
    return bin(seed * 2654435761 & 0xFFFFFFFF).count("1") % 2 == 1


def transposed_first(seed: int) -> bool:
    """Whether model ``seed`` runs every operator it can transposed (a third of them, so
    that the qemu-cm4 share gets some too; cruntime/transpose.py)."""
    return seed % 3 == 0


def patched_first(seed: int) -> bool:
    """Whether model ``seed`` runs a random patch stage, forced (a fifth of them, so that
    the qemu-cm4 share gets some too; cruntime/patch.py)."""
    return seed % 5 == 1


def random_stage(g: Graph, seed: int, tries: int = 24) -> tuple[int, int, int] | None:
    """A patch stage (first op, last op, bands) that ``plan_stage`` accepts on ``g``, drawn
    from ``seed`` (None: no operator range of the model can run in bands)."""
    r = np.random.default_rng([seed, 7])
    ranges = [(a, b) for a in range(len(g.ops)) for b in range(a, len(g.ops))]
    for k in r.permutation(len(ranges))[:tries]:
        a, b = ranges[int(k)]
        bands = int(r.integers(1, 9))
        try:
            plan_stage(g, a, b, bands)
        except TinyDeployError:
            continue
        return a, b, bands
    return None


def sample_bytes(sample: list[np.ndarray]) -> bytes:
    """One sample's input tensors as the C runtime takes them (raw bytes, model order)."""
    return b"".join(np.ascontiguousarray(a).tobytes() for a in sample)


def prepare(built: Built, host: HostRef, samples: int = SAMPLES
            ) -> tuple[Prepared | None, str, str]:
    """(case, "", "") or (None, discard kind, reason)."""
    g = built.graph
    xs = inputs(g, built.recipe.seed, samples)
    res = host.run(built.data, xs, len(g.outputs))
    if res.crashed:
        return None, "tflm-crashed", built.recipe.target
    if res.refused or res.outputs is None:
        return None, "tflm-refused", res.refused[-160:]
    facts = load(built.data)
    try:
        # half the models (a hash of the seed, so that every k-th model -- the qemu-cm4
        # share -- gets both) generated speed-first (each convolution's pixel-pair scratch,
        # the table ADD at any size): paths the size-first choices leave out of small models
        seed = built.recipe.seed
        ir = read_graph(facts)
        stage = random_stage(ir, seed) if patched_first(seed) else None
        level = log.level  # a forced random stage that costs more than it saves is no news
        log.setLevel(logging.ERROR)
        try:
            texts, cres = build_c(facts, patch=stage or "auto", speed_first=speed_first(seed),
                                  force_transposed=transposed_first(seed))
        finally:
            log.setLevel(level)
    except TinyDeployError as exc:
        return None, "c-refused", str(exc)[:160]
    layers = classify(ir, texts["td_model.c"], built.tags)
    expected = b"".join(b"\x00" + b"".join(np.ascontiguousarray(o).tobytes() for o in outs)
                        for outs in res.outputs)
    in_bytes = sum(int(a.nbytes) for a in xs[0])
    out_bytes = sum(int(o.nbytes) for o in res.outputs[0])
    case = Case(key=built.recipe.seed, texts=texts,
                inputs=b"".join(sample_bytes(s) for s in xs), samples=samples,
                in_bytes=in_bytes, out_bytes=out_bytes,
                flash=cres.weight_bytes + cres.param_bytes + in_bytes * samples + 8192,
                ram=cres.plan.size + 2048, macs=built.macs)
    dts = [(str(o.dtype), int(o.nbytes)) for o in res.outputs[0]]
    return Prepared(built, xs, case, expected, layers, dts), "", ""


def compare(p: Prepared, got: bytes | str) -> str:
    """'' when ``got`` equals the expected bytes, else a one-line description."""
    if isinstance(got, str):
        return got.splitlines()[0][:200] if got else "no output"
    if got == p.expected:
        return ""
    step = 1 + p.case.out_bytes
    worst, bad_samples, rc = 0.0, 0, 0
    for s in range(p.case.samples):
        a, b = got[s * step:(s + 1) * step], p.expected[s * step:(s + 1) * step]
        if a == b:
            continue
        bad_samples += 1
        rc = rc or a[0]
        off = 1
        for dt, n in p.out_dtypes:
            x = np.frombuffer(a[off:off + n], dtype=dt).astype(np.float64)
            y = np.frombuffer(b[off:off + n], dtype=dt).astype(np.float64)
            with np.errstate(invalid="ignore"):
                worst = max(worst, float(np.nanmax(np.abs(x - y))) if n else 0.0)
            off += n
    if rc:
        return f"td_invoke returned {rc}"
    return f"{bad_samples}/{p.case.samples} samples differ, max {worst:g} LSB"


def save_case(out: Path, name: str, p: Prepared, note: str) -> Path:
    """Write ``name.tflite``, ``name.npz`` (x_test or x_test_K, the samples; the
    ``tinydeploy validate --data`` convention) and ``name.json`` (recipe, note, layers)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.tflite").write_bytes(p.built.data)
    g = p.built.graph
    arrays = {}
    for k, i in enumerate(g.inputs):
        shape = g.t(i).shape
        x = np.stack([s[k] for s in p.samples])
        if len(shape) > 1 and shape[0] == 1:
            x = x.reshape(len(p.samples), *shape[1:])
        arrays["x_test" if len(g.inputs) == 1 else f"x_test_{k}"] = x
    np.savez(out / f"{name}.npz", **arrays)
    info = {"note": note, "recipe": p.built.recipe.to_dict(),
            "layers": [{"op": lp.label, "path": lp.path, "regimes": sorted(lp.regimes)}
                       for lp in p.layers]}
    (out / f"{name}.json").write_text(json.dumps(info, indent=1) + "\n")
    return out / f"{name}.tflite"
