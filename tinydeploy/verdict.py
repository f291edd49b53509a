"""The verdict: host and device outputs compared in their own dtype, never cast.

Integer outputs (int8, int16, int32, ...) are compared as integers: |device - host| in LSB
(one unit of the dtype), at most ``tolerance_lsb``. Float outputs (float32) are compared
by bit pattern: their distance in ULP (units in the last place: how far apart the two
values' bit patterns are in float order), which is 0 only for identical bits (so -0.0 is
not 0.0 and a NaN equals only the same NaN); or, with a stated ``tolerance_float``, by
|device - host| <= tolerance_float (NaN only within when bit-identical). Every output's
rule is in the report (``metrics["comparison"]``), and a sample is within tolerance only
when every value of every output is.

``compute_metrics`` is every number of the report for one output tensor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .facts import ModelFacts, TensorFacts
from .hostref import dequantize


@dataclass(frozen=True)
class Rule:
    """How one output is compared."""

    output: str
    dtype: str  # schema TensorType name
    method: str  # "integer" | "bit pattern" | "absolute"
    unit: str  # of the |Δ| figures: "LSB" (integers) or "ULP" (floats)
    tolerance: float  # LSB for integers, ULP (0) for bit patterns, the value for "absolute"

    def text(self) -> str:
        """``out: INT8 as integers, |Δ| <= 0 LSB (bit-exact)`` and the like."""
        if self.method == "integer":
            tol = ("bit-exact" if not self.tolerance
                   else f"|Δ| <= {int(self.tolerance)} LSB")
            return f"{self.output}: {self.dtype} as integers ({tol})"
        if self.method == "bit pattern":
            return f"{self.output}: {self.dtype} by bit pattern (bit-exact; |Δ| in ULP)"
        return f"{self.output}: {self.dtype} by value, |Δ| <= {self.tolerance:g} (absolute)"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "text": self.text()}


def is_float(dtype: str | np.dtype[Any]) -> bool:
    """A float dtype, by schema name (``FLOAT32``) or numpy dtype."""
    if isinstance(dtype, str):
        return dtype.upper().startswith("FLOAT")
    return bool(np.issubdtype(np.dtype(dtype), np.floating))


def rule_for(t: TensorFacts, tolerance_lsb: int = 0,
             tolerance_float: float | None = None) -> Rule:
    """The rule for output ``t``: integers within ``tolerance_lsb``; floats by bit pattern,
    or within ``tolerance_float`` (absolute) when one is given (> 0)."""
    if not is_float(t.dtype):
        return Rule(t.name, t.dtype, "integer", "LSB", int(tolerance_lsb))
    if tolerance_float:
        return Rule(t.name, t.dtype, "absolute", "ULP", float(tolerance_float))
    return Rule(t.name, t.dtype, "bit pattern", "ULP", 0)


def _ordered(values: np.ndarray) -> np.ndarray:
    """Float bit patterns as int64 in float order (-0.0 -> -1, +0.0 -> 0)."""
    bits = values.view(f"i{values.dtype.itemsize}").astype(np.int64)
    magnitude = np.int64((1 << (8 * values.dtype.itemsize - 1)) - 1)  # all but the sign bit
    return np.where(bits < 0, -(bits & magnitude) - 1, bits)


def units_apart(host: np.ndarray, device: np.ndarray) -> np.ndarray:
    """|device - host| per value, one row per sample (batch axis first): in LSB for
    integers, in ULP for floats (0 only for identical bits)."""
    n = len(host)
    h = np.ascontiguousarray(host).reshape(n, -1)
    d = np.ascontiguousarray(device).reshape(n, -1)
    if not is_float(h.dtype):
        return np.abs(d.astype(np.int64) - h.astype(np.int64))
    oh, od = _ordered(h), _ordered(d)
    if h.dtype.itemsize < 8:
        return np.abs(od - oh)
    far = np.abs(od.astype(np.float64) - oh.astype(np.float64))  # may round; never to 0
    return np.where(oh == od, 0, np.maximum(far, 1)).astype(np.int64)


def within(host: np.ndarray, device: np.ndarray, rule: Rule,
           apart: np.ndarray | None = None) -> np.ndarray:
    """Per sample: is every value within the rule's tolerance?"""
    n = len(host)
    apart = units_apart(host, device) if apart is None else apart
    if rule.method != "absolute":
        ok = apart <= rule.tolerance
    else:
        h = np.asarray(host, np.float64).reshape(n, -1)
        d = np.asarray(device, np.float64).reshape(n, -1)
        with np.errstate(invalid="ignore"):
            ok = (apart == 0) | (np.abs(d - h) <= rule.tolerance)
    return ok.all(axis=1) if n else np.zeros(0, bool)


def values(q: np.ndarray, t: TensorFacts) -> np.ndarray:
    """The real values of an output (dequantized integers, floats as they are)."""
    if is_float(np.asarray(q).dtype):
        return np.asarray(q, dtype=np.float64)
    return dequantize(q, t).astype(np.float64)


# --- metrics -----------------------------------------------------------------------------
def predicted_class(q: np.ndarray, out: TensorFacts) -> np.ndarray:
    """Class per sample: argmax, or value > 0.5 for a single (sigmoid) unit."""
    flat = np.asarray(q).reshape(len(q), -1)
    if flat.shape[1] == 1:  # single sigmoid unit
        return (values(flat[:, 0], out) > 0.5).astype(np.int64)
    return np.argmax(flat, axis=1)


def _stats(v: np.ndarray) -> dict[str, float | int]:
    v = np.asarray(v)
    if v.size == 0:
        return {}
    cast = int if np.issubdtype(v.dtype, np.integer) else float
    return {"min": cast(v.min()), "median": float(np.median(v)), "max": cast(v.max()),
            "mean": float(v.mean())}


def _cosine(hf: np.ndarray, df: np.ndarray) -> float:
    hn, dn = float(np.linalg.norm(hf)), float(np.linalg.norm(df))
    if hn == 0.0 and dn == 0.0:
        return 1.0
    if hn == 0.0 or dn == 0.0:
        return 0.0
    return float(np.dot(hf.ravel(), df.ravel()) / (hn * dn))


def compute_metrics(host: np.ndarray, device: np.ndarray, out: TensorFacts,
                    labels: np.ndarray | None, time_us: np.ndarray, cycles: np.ndarray,
                    tolerance_lsb: int, facts: ModelFacts | None = None,
                    tolerance_float: float | None = None) -> dict[str, Any]:
    """Every number of the report for one output tensor (batch axis first), compared in
    its own dtype (see the module docstring); ``comparison`` says how."""
    n = len(host)
    rule = rule_for(out, tolerance_lsb, tolerance_float)
    apart = units_apart(host, device)
    ok = within(host, device, rule, apart)
    hf, df = values(host, out).reshape(n, -1), values(device, out).reshape(n, -1)
    with np.errstate(invalid="ignore", over="ignore"):
        err = df - hf
        finite = np.isfinite(err)
        e = err[finite]
    hn = float(np.linalg.norm(hf[finite])) if e.size else 0.0
    size = apart.size
    m: dict[str, Any] = {
        "output": out.name,
        "samples": n,
        "values": int(size),
        "comparison": rule.to_dict(),
        "exact_match_rate": float(np.mean(apart == 0)) if size else 1.0,
        "exact_sample_rate": float(np.mean(apart.max(axis=1) == 0)) if n and size else 1.0,
        "samples_within_tolerance": int(np.sum(ok)),
        "samples_differing": int(np.sum(~ok)),
        "max_abs_diff_lsb": int(apart.max()) if size else 0,
        "mean_abs_diff_lsb": float(apart.mean()) if size else 0.0,
        "diff_unit": rule.unit,
        "mae": float(np.mean(np.abs(e))) if e.size else 0.0,
        "rmse": float(np.sqrt(np.mean(e**2))) if e.size else 0.0,
        "l2_relative_error": float(np.linalg.norm(e) / hn) if hn else float(np.linalg.norm(e)),
        "cosine_similarity": _cosine(np.nan_to_num(hf), np.nan_to_num(df)),
        "latency_us": _stats(time_us),
    }
    if is_float(out.dtype):
        m["max_abs_diff"] = float(np.abs(e).max()) if e.size else 0.0
        m["non_finite_mismatches"] = int(np.sum(~finite & (apart != 0)))
    if np.any(cycles):
        m["cycles"] = _stats(cycles)
    if labels is not None and n:
        from .quantization import metric, task_of

        task = task_of(facts, labels) if facts is not None else "regression"
        m["task"] = task
        name, host_score = metric(task, hf, labels)
        m[f"{name}_host"] = host_score
        m[f"{name}_device"] = metric(task, df, labels)[1]
        if task == "classification":
            m["top1_agreement"] = float(np.mean(predicted_class(host, out)
                                                == predicted_class(device, out)))
    return m


# --- the verdict over every output --------------------------------------------------------
@dataclass
class Judgement:
    """Per sample (batch axis first): ``ok`` = every output within its rule; ``explained``
    = not ok, but every mismatch is a known TFLM version difference (``notes``)."""

    ok: np.ndarray
    explained: np.ndarray
    rules: list[Rule]
    notes: list[dict[str, Any]]

    @property
    def differing(self) -> int:
        """Samples that are neither within tolerance nor explained: the device's fault."""
        return int(np.sum(~self.ok & ~self.explained))


def judge(host: list[np.ndarray], device: list[np.ndarray], facts: ModelFacts,
          tolerance_lsb: int = 0, tolerance_float: float | None = None,
          known_differences: bool = True) -> Judgement:
    """Compare every output (one array per output, batch axis first) by its rule; with
    ``known_differences`` an integer output whose mismatches all fit one entry of
    :mod:`tinydeploy.known_diffs` explains its samples instead of failing them."""
    from .known_diffs import explain, note

    n = len(host[0]) if host else 0
    ok, explained = np.ones(n, bool), np.ones(n, bool)
    rules, notes = [], []
    for h, d, t in zip(host, device, facts.outputs, strict=True):
        rule = rule_for(t, tolerance_lsb, tolerance_float)
        rules.append(rule)
        apart = units_apart(h, d)
        good = within(h, d, rule, apart)
        ok &= good
        if good.all():
            continue
        entry = (explain(facts, t, int(apart[~good].max()))
                 if known_differences and rule.method == "integer" else None)
        if entry is None:
            explained &= good
            continue
        bad = int(np.sum(~good))
        notes.append({"id": entry["id"], "output": t.name, "op": entry["op"],
                      "dtype": entry["dtype"], "lsb": entry["lsb"], "samples": bad,
                      "text": note(entry, t.name, bad)})
    return Judgement(ok, explained & ~ok, rules, notes)
