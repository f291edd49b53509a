"""Shrink a mismatching model to a minimal one that still mismatches.

Greedy reduction of the recipe: drop layers, shrink the input (dimensions to 1 or halved),
reduce each layer's channels, kernel, strides, dilations, depth multiplier and state size,
drop biases and fused activations, undo broadcasting. A candidate is kept when it still
builds, TFLM still runs it and the C runtime still differs from TFLM on the same target (the
portable build on this machine when the model fails there too: much faster than QEMU; the
result is checked once more on the original target).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .case import Prepared, compare, prepare, save_case
from .host import HostRef
from .models import Recipe, build
from .net import Invalid
from .paths import LayerPath
from .targets import run_cases

__all__ = ["candidates", "describe", "shrink_case"]

SIZE_KEYS = ("out_c", "n_state", "depth_mult", "kh", "kw", "fh", "fw", "stride_h",
             "stride_w", "dil_h", "dil_w", "n_other", "size0", "size1", "n_dead", "levels")
FLAG_EDITS: tuple[tuple[str, Any], ...] = (("has_bias", False), ("act", 0), ("bcast", "none"),
                                           ("keep_dims", False), ("flatten", False),
                                           ("w_dist", "small"), ("time_major", False),
                                           ("big_bias", False))


def candidates(rec: Recipe) -> Iterator[Recipe]:
    """Smaller variants of ``rec``, the biggest reductions first."""
    if len(rec.layers) > 1:
        for i in range(len(rec.layers)):
            c = rec.copy()
            del c.layers[i]
            yield c
    for d, v in enumerate(rec.in_shape):
        for nv in sorted({1, v // 2, v - 1}):
            if 1 <= nv < v:
                c = rec.copy()
                c.in_shape[d] = nv
                yield c
    for i, lay in enumerate(rec.layers):
        for key in SIZE_KEYS:
            v = lay.p.get(key)
            if isinstance(v, int) and not isinstance(v, bool) and v > 1:
                for nv in sorted({1, v // 2, v - 1}):
                    if 1 <= nv < v:
                        c = rec.copy()
                        c.layers[i].p[key] = nv
                        yield c
        for key, nv in FLAG_EDITS:
            if key in lay.p and lay.p[key] != nv:
                c = rec.copy()
                c.layers[i].p[key] = nv
                yield c


def describe(p: Prepared) -> str:
    """One line per layer: label, kernel path, regimes, output shape."""
    g = p.built.graph
    shapes = [g.t(op.outputs[0]).shape for op in g.ops]
    ins = ", ".join(f"{g.t(i).dtype} {list(g.t(i).shape)}" for i in g.inputs)
    rows = [f"input {ins}"]
    for lp, shape in zip(p.layers, shapes, strict=False):
        rows.append(f"{lp.label} [{lp.path}] {'+'.join(sorted(lp.regimes)) or 'base'} "
                    f"-> {list(shape)}")
    return "; ".join(rows)


def _fails(rec: Recipe, target: str, host: HostRef, work: Path, firmware: Path | None = None
           ) -> tuple[Prepared | None, str]:
    try:
        built = build(rec.copy())
    except Invalid:
        return None, ""
    p, _, _ = prepare(built, host)
    if p is None:
        return None, ""
    got = run_cases([p.case], target, work, firmware=firmware)
    why = compare(p, got.get(p.case.key, "not run"))
    return (p, why) if why else (None, "")


def shrink_case(p: Prepared, target: str, host: HostRef, out: Path, work: Path,
                budget: int = 120, firmware: Path | None = None
                ) -> tuple[dict[str, Any], list[LayerPath]]:
    """Shrink ``p`` (mismatching on ``target``), save the minimal model into ``out`` as
    ``<target>-seed<k>-min.*``; return what was found and the minimal model's layers."""
    rec = p.built.recipe.copy()
    on = target
    if target != "native":
        q, _ = _fails(rec, "native", host, work, firmware)
        on = "native" if q is not None else target
    best, why = p, "as found"
    tries = 0
    improved = True
    while improved and tries < budget:
        improved = False
        for cand in candidates(best.built.recipe):
            tries += 1
            q, w = _fails(cand, on, host, work, firmware)
            if q is not None:
                best, why, improved = q, w, True
                break
            if tries >= budget:
                break
    if on != target:  # confirm on the target the mismatch was found on
        q, w = _fails(best.built.recipe, target, host, work, firmware)
        why = w if q is not None else f"{why} (on native; passes on {target} once shrunk)"
    name = f"{target}-seed{p.case.key}-min"
    path = save_case(out, name, best, why)
    return {"seed": p.case.key, "target": target, "model": str(path), "note": why,
            "tries": tries, "layers": describe(best)}, best.layers
