"""The deploy report's extra sections (stages, training, quantization, flash), formatted.

Values are preformatted strings (%, units) so the report shows no raw keys or dicts.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from .fmt import fmt, pct


def _score(name: str, value: Any) -> str:
    if value is None:
        return "-"
    return pct(value) if "acc" in name else fmt(value)


def training_rows(training: dict[str, Any]) -> dict[str, str]:
    """Example, task, epochs and the final/test metrics of the training stage."""
    rows = {"example": str(training.get("name", "-")), "task": str(training.get("task", "-")),
            "epochs": fmt(training.get("epochs"))}
    for key, value in training.get("metrics", {}).items():
        rows[key.replace("_", " ")] = _score(key, value)
    return rows


def quantization_rows(quant: dict[str, Any]) -> dict[str, str]:
    """Float vs int8 metric, file sizes and the representative set of the quantize stage."""
    m = quant.get("metric", {})
    name = str(m.get("name", "metric"))
    rows = {"task": str(quant.get("task", "-"))}
    if m:
        rows[f"{name}, Keras float"] = _score(name, m.get("keras_float"))
        rows[f"{name}, int8 (TFLM Python)"] = _score(name, m.get("tflm_int8"))
        delta = m.get("delta")
        rows[f"{name} change"] = ("-" if delta is None else
                                  (f"{100 * delta:+.2f} points" if "acc" in name
                                   else f"{delta:+.6g}"))
        rows["test samples"] = fmt(m.get("test_samples"))
    for kind, size in quant.get("sizes_bytes", {}).items():
        rows[f"size, {kind}"] = fmt(size, "B")
    rep = quant.get("representative", {})
    if rep:
        rows["representative samples"] = f"{fmt(rep.get('samples'))} from {rep.get('source')}"
    return rows


def deploy_sections(target: str, board: str, int8_path: Path, data_path: Path,
                    stages: dict[str, float], training: dict[str, Any],
                    quant: dict[str, Any], arena_info: dict[str, Any],
                    flash_info: dict[str, Any], reused: list[str]) -> dict[str, dict[str, Any]]:
    """All extra sections of the deploy report, in page order.

    Returns:
        Section name -> {row label: text}; empty sections are dropped by the renderer.
    """
    timings = {name: (f"{sec:.1f} s" + (" (up to date, reused)" if name in reused else ""))
               for name, sec in stages.items()}
    timings["total"] = f"{sum(stages.values()):.1f} s"
    return {
        "Deploy": {"target": target, "board": board,
                   "int8 model": str(Path(int8_path).resolve()),
                   "data": str(Path(data_path).resolve())},
        "Stage timings": timings,
        "Training": training_rows(training) if training else {},
        "Quantization": quantization_rows(quant) if quant else {},
        "Arena tuning": {k.replace("_", " "): fmt(v, "B" if "arena" in k else "s")
                         for k, v in arena_info.items()},
        "Flash": {k.replace("_", " "): (shlex.join(v) if k == "command" and isinstance(v, list)
                                        else fmt(v, "s" if k == "seconds" else ""))
                  for k, v in flash_info.items()},
    }
