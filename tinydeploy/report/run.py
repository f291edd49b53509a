"""The report facts of one validation run, from what :mod:`tinydeploy.validation` measured:
latency, classes (with their names), differing samples, memory, the float-model
comparison, the diagnosis and the headline."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import runinfo
from ..errors import TinyDeployError
from ..facts import ModelFacts, TensorFacts
from ..verdict import predicted_class, rule_for, units_apart, values, within
from . import facts as report_facts
from . import headline as report_headline


def run_facts(host: np.ndarray, device: np.ndarray, out: TensorFacts,
              labels: np.ndarray | None, times: np.ndarray, cycles: np.ndarray,
              tolerance_lsb: int, metrics: dict[str, Any], device_info: dict[str, Any],
              facts: ModelFacts, board: str | None, build: dict[str, Any] | None,
              tolerance_float: float | None = None,
              names: list[str] | None = None) -> dict[str, Any]:
    """The report facts of one run (see :mod:`tinydeploy.report.facts`); also moves the
    latency of an emulated board out of ``metrics['latency_us']`` (instructions, not µs).
    The differing samples are those of output ``out`` outside its rule
    (:func:`tinydeploy.verdict.rule_for`)."""
    board_id = str(device_info.get("board_id") or board or "")
    lat = report_facts.latency(times, cycles, board_id)
    if lat["unit"] == "instructions":
        metrics.pop("latency_us", None)
        metrics.pop("cycles", None)
        metrics["instructions"] = lat["stats"]
    facts_doc: dict[str, Any] = {
        "run": runinfo.header(board_id, str(device_info.get("runtime", "")), facts.sha256,
                              str(Path(facts.path).resolve()) if Path(facts.path).is_file()
                              else str(facts.path)),
        "latency": lat}
    hc = dc = None
    if labels is not None and len(host) and metrics.get("task") == "classification":
        hc, dc = predicted_class(host, out), predicted_class(device, out)
        width = int(np.prod(out.sample_shape)) if out.sample_shape else 1
        facts_doc["classification"] = report_facts.classification(hc, dc, labels,
                                                                  max(width, 2), names)
    elif labels is not None and len(host):
        facts_doc["regression"] = report_facts.regression(
            values(host, out), values(device, out), labels)
    regressor = metrics.get("task") == "regression"
    n = len(host)
    hv, dv = values(host, out).reshape(n, -1), values(device, out).reshape(n, -1)
    errors = {"device vs host": report_facts.error_stats(hv, dv, regressor)}
    if regressor and labels is not None and np.asarray(labels).size == hv.size:
        y = np.asarray(labels, np.float64).reshape(n, -1)
        errors["device vs labels"] = report_facts.error_stats(y, dv, True)
        errors["host vs labels"] = report_facts.error_stats(y, hv, True)
    facts_doc["errors"] = errors
    rule = rule_for(out, tolerance_lsb, tolerance_float)
    apart = units_apart(host, device)
    facts_doc["differing"] = report_facts.differing(
        host, device, tolerance_lsb, hc, dc, apart=apart,
        outside=~within(host, device, rule, apart))
    facts_doc["memory"] = report_facts.memory(device_info, build)
    return facts_doc


def class_names(facts: ModelFacts) -> list[str] | None:
    """The class names beside the model (quantization.json, labels.txt), if any."""
    from ..app_api import class_labels

    try:
        return class_labels(facts) or None
    except TinyDeployError:
        return None


def add_answer(rep: dict[str, Any], facts: ModelFacts, xs: list[np.ndarray],
               host: list[np.ndarray], device: list[np.ndarray], metrics: dict[str, Any],
               verdict: Any, n: int, clipped: dict[str, float], stateful: bool,
               reference: Mapping[str, Any]) -> None:
    """Add the float-model comparison, the diagnosis and the headline to ``rep``
    (``reference``: the host reference the verdict was made against, its ``describe()``)."""
    from ..layers import analyze
    from .xcross import cross

    tout = facts.outputs[0]
    fc = (cross(facts, xs, host[0], device[0], tout, metrics.get("task") == "regression",
                stateful=stateful) if len(facts.outputs) == 1 else {})
    if fc:
        rep["float_reference"] = fc
    scales = {k: f"input scale {t.scale:.6g}, zero point {t.zero_point}"
              for k, t in zip(clipped, facts.inputs, strict=False) if t.scale}
    rep["diagnosis"] = report_headline.diagnose(
        verdict.differing == 0, n, verdict.differing, metrics,
        report_headline.saturation(clipped, scales), rep.get("defects", []), verdict.notes,
        fc)
    macs = int(analyze(facts)["totals"]["macs"])
    rep["headline"] = report_headline.headline(
        verdict.differing == 0, n, verdict.differing, int(np.sum(verdict.explained)), metrics,
        rep["latency"], rep["memory"], rep["diagnosis"], macs, facts.size_bytes)
    rep["headline"]["reference"] = report_headline.reference_text(reference)
