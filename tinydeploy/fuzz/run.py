"""The differential runner: random models through the host reference (TFLM's Python
interpreter) and the C runtime (portable build on this machine, DSP build on qemu-cm4),
compared byte for byte, with per-layer kernel-path and regime coverage.

``fuzz`` draws thousands of models, prepares each (:func:`.case.prepare`: discarded when
TFLM refuses or crashes on it or the C generator refuses it), runs them in batches per
target (:func:`.targets.run_cases`) and returns a :class:`Summary`; mismatching models are
saved (``.tflite``, inputs ``.npz``, recipe ``.json``) and shrunk (:mod:`.shrink`: one
per known issue, a few per new minimal signature).
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .case import Prepared, compare, prepare, save_case
from .host import HostRef
from .known import known_issue
from .models import random_recipe
from .net import Invalid
from .paths import LayerPath
from .shrink import shrink_case
from .targets import run_cases
from .tflm import TARGET as TFLM_TARGET
from .tflm import run_tflm, tflm_tree

__all__ = ["Summary", "fuzz"]


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
        """Count one model run on ``target`` (``bad``: it mismatched) in every coverage row
        (operator, path, regime) its layers fall into, and in each (operator, path) total
        (regime ``*``)."""
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


def fuzz(n_models: int, seed: int, targets: list[str], out: Path, batch: int = 120,
         shrink_max: int = 4, qemu_every: int = 1, jobs: int = 2,
         log: Callable[[str], None] = print, firmware: Path | None = None,
         tflm_every: int = 0, shrink_budget: int = 120) -> Summary:
    """Run ``n_models`` random models (seeds seed .. seed + n - 1) on ``targets``;
    ``qemu_every``: only every k-th model also runs on qemu-cm4; ``firmware``: the kernel
    sources (default: tinydeploy's ``firmware/``); ``tflm_every``: with a TFLM tree in
    ``$TINYDEPLOY_TFLM_SRC``, every k-th model also runs as generated TFLM firmware on
    native (target ``tflm-native``; 0: never); ``shrink_budget``: candidate models tried
    per shrink."""
    tree = tflm_tree() if tflm_every > 0 else None
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
                                              shrink_budget, firmware)
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
    for p in todo:
        t0 = time.monotonic()
        got = run_tflm(p, tree, work)
        summary.seconds[TFLM_TARGET] += time.monotonic() - t0
        if isinstance(got, str) and got.startswith("tflm-refused"):
            summary.discarded["tflm-firmware-refused"] += 1
            summary.reasons[f"tflm-firmware-refused: {p.built.recipe.target}: {got[:120]}"] += 1
            continue
        why = compare(p, got)
        summary.add(TFLM_TARGET, p, bool(why))
        if why:
            _mismatch(summary, TFLM_TARGET, p, why, out, log)


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
