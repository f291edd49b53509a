"""The differential runner: random models through the host reference (TFLM's Python
interpreter) and the C runtime (portable build on this machine, DSP build on qemu-cm4),
compared byte for byte, with per-layer kernel-path and regime coverage.

``prepare`` makes one case (model, samples, expected bytes, coverage rows) or says why the
model was discarded (TFLM refused or crashed on it, the C generator refused it);
``fuzz`` runs thousands of them in batches and returns a :class:`Summary`; mismatching
models are saved (``.tflite``, inputs ``.npz``, recipe ``.json``) and the first few of each
kind are shrunk (:mod:`.shrink`).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..cruntime.codegen import build as build_c
from ..cruntime.graph import read_graph
from ..errors import TinyDeployError
from ..facts import load
from .host import HostRef
from .known import known_issue
from .models import Built, Recipe, build, inputs, random_recipe
from .net import Invalid
from .paths import LayerPath, classify
from .targets import Case, run_cases

__all__ = ["Prepared", "Summary", "compare", "fuzz", "prepare", "save_case"]

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


@dataclass
class Summary:
    """Counts of a fuzz run (see ``table``)."""

    models: int = 0
    discarded: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    run: Counter[str] = field(default_factory=Counter)  # per target
    mismatches: dict[str, list[dict[str, Any]]] = field(default_factory=lambda:
                                                        defaultdict(list))
    rows: dict[tuple[str, str, str, str], list[int]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=Counter)
    shrunk: list[dict[str, Any]] = field(default_factory=list)

    def add(self, target: str, p: Prepared, bad: bool) -> None:
        self.run[target] += 1
        seen = set()
        for lp in p.layers:
            for reg in sorted(lp.regimes) or ["base"]:
                seen.add((target, lp.label, lp.path, reg))
            seen.add((target, lp.label, lp.path, "*"))
        for key in seen:
            row = self.rows.setdefault(key, [0, 0])
            row[0] += 1
            row[1] += int(bad)

    @property
    def total_mismatches(self) -> int:
        return sum(len(v) for v in self.mismatches.values())

    def new_mismatches(self, target: str) -> list[dict[str, Any]]:
        """The mismatches on ``target`` no known issue explains."""
        return [m for m in self.mismatches[target] if not m["known"]]


def _sample_bytes(sample: list[np.ndarray]) -> bytes:
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
        texts, cres = build_c(facts)
    except TinyDeployError as exc:
        return None, "c-refused", str(exc)[:160]
    ir = read_graph(facts)
    layers = classify(ir, texts["td_model.c"], built.tags)
    expected = b"".join(b"\x00" + b"".join(np.ascontiguousarray(o).tobytes() for o in outs)
                        for outs in res.outputs)
    in_bytes = sum(int(a.nbytes) for a in xs[0])
    out_bytes = sum(int(o.nbytes) for o in res.outputs[0])
    case = Case(key=built.recipe.seed, texts=texts,
                inputs=b"".join(_sample_bytes(s) for s in xs), samples=samples,
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


def fuzz(n_models: int, seed: int, targets: list[str], out: Path, batch: int = 120,
         shrink_max: int = 4, qemu_every: int = 1, jobs: int = 2,
         log: Callable[[str], None] = print, firmware: Path | None = None,
         tflm_every: int = 0) -> Summary:
    """Run ``n_models`` random models (seeds seed .. seed + n - 1) on ``targets``;
    ``qemu_every``: only every k-th model also runs on qemu-cm4; ``firmware``: the kernel
    sources (default: tinydeploy's ``firmware/``); ``tflm_every``: with a TFLM tree in
    ``$TINYDEPLOY_TFLM_SRC``, every k-th model also runs as generated TFLM firmware on
    native (target ``tflm-native``; 0: never)."""
    from .tflm import tflm_tree

    tree = tflm_tree() if tflm_every > 0 else None
    from .shrink import shrink_case

    out = Path(out)
    work = out / "work"
    summary = Summary()
    t_start = time.monotonic()
    cpu0 = os.times()
    pending: list[Prepared] = []
    known: dict[str, list[frozenset[tuple[str, str]]]] = defaultdict(list)
    shrunk_issues: dict[str, set[str]] = defaultdict(set)
    with HostRef() as host:
        def flush() -> None:
            for target in targets:
                todo = [p for p in pending if target != "qemu-cm4"
                        or (p.case.key - seed) % qemu_every == 0]
                if not todo:
                    continue
                t0 = time.monotonic()
                got = run_cases([p.case for p in todo], target, work / target, jobs,
                                summary.seconds, firmware)
                summary.seconds[target] += time.monotonic() - t0
                for p in todo:
                    why = compare(p, got.get(p.case.key, "not run"))
                    summary.add(target, p, bool(why))
                    if not why:
                        continue
                    _mismatch(summary, target, p, why, out, log)
                    sig = _signature(p.layers)
                    issue = known_issue(p.layers)
                    # one minimal model per known issue; a mismatch containing an already
                    # shrunk one's layers is most likely the same fault (at most shrink_max
                    # shrinks per minimal signature)
                    if (issue and issue in shrunk_issues[target]) \
                            or sum(1 for k in known[target] if k <= sig) >= shrink_max \
                            or len(summary.shrunk) >= 10 * shrink_max or not shrink_max:
                        continue
                    shrunk_issues[target].add(issue)
                    info, small = shrink_case(p, target, host, out / "minimal", work / "shrink",
                                              firmware=firmware)
                    known[target].append(_signature(small))
                    summary.shrunk.append(info)
                    log(f"  minimal: {info['model']} ({info['note']}): {info['layers']}")
            if tree is not None:
                _run_tflm(summary, tree, [p for p in pending
                                          if (p.case.key - seed) % tflm_every == 0],
                          work / "tflm", out, log)
            pending.clear()

        for s in range(seed, seed + n_models):
            t0 = time.monotonic()
            try:
                built = random_recipe(s)
            except Invalid:
                summary.discarded["generator"] += 1
                continue
            summary.models += 1
            t1 = time.monotonic()
            summary.seconds["generate"] += t1 - t0
            p, kind, why = prepare(built, host)
            summary.seconds["host + C generation"] += time.monotonic() - t1
            if p is None:
                summary.discarded[kind] += 1
                summary.reasons[f"{kind}: {built.recipe.target}: {why}"] += 1
                continue
            pending.append(p)
            if len(pending) >= batch:
                flush()
                log(_progress(summary, s - seed + 1, n_models, t_start))
        flush()
    summary.seconds["total"] = time.monotonic() - t_start
    cpu = [b - a for a, b in zip(cpu0, os.times(), strict=True)]
    summary.seconds["cpu (with children)"] = sum(cpu[:4])
    return summary


def _run_tflm(summary: Summary, tree: Any, todo: list[Prepared], work: Path, out: Path,
              log: Callable[[str], None]) -> None:
    from .tflm import TARGET, run_tflm

    for p in todo:
        t0 = time.monotonic()
        got = run_tflm(p, tree, work)
        summary.seconds[TARGET] += time.monotonic() - t0
        if isinstance(got, str) and got.startswith("tflm-refused"):
            summary.discarded["tflm-firmware-refused"] += 1
            summary.reasons[f"tflm-firmware-refused: {p.built.recipe.target}: {got[:120]}"] += 1
            continue
        why = compare(p, got)
        summary.add(TARGET, p, bool(why))
        if why:
            _mismatch(summary, TARGET, p, why, out, log)


def _signature(layers: list[LayerPath]) -> frozenset[tuple[str, str]]:
    """The (operator, kernel path) pairs of a model."""
    return frozenset((lp.label, lp.path) for lp in layers)


def _mismatch(summary: Summary, target: str, p: Prepared, why: str, out: Path,
              log: Callable[[str], None]) -> None:
    name = f"{target}-seed{p.case.key}"
    path = save_case(out / "mismatches", name, p, why)
    known = known_issue(p.layers)
    summary.mismatches[target].append({"seed": p.case.key, "why": why, "model": str(path),
                                       "known": known,
                                       "layers": [f"{lp.label}:{lp.path}:"
                                                  f"{'+'.join(sorted(lp.regimes))}"
                                                  for lp in p.layers]})
    log(f"MISMATCH {target} seed {p.case.key} ({p.built.recipe.target}): {why}"
        f"{f' [known: {known}]' if known else ''} -> {path}")


def _progress(s: Summary, done: int, total: int, t0: float) -> str:
    dt = time.monotonic() - t0
    ran = max(s.run.values(), default=0)
    return (f"[{done}/{total}] {ran} models run, {s.total_mismatches} mismatches, "
            f"{sum(s.discarded.values())} discarded, {ran / max(dt, 1e-9):.1f} models/s")


def rebuild(recipe: Recipe) -> Built:
    """A recipe's model (for the shrinker and saved recipes)."""
    return build(recipe)
