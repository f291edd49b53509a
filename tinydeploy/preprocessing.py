"""The preprocessing a model expects: what its training did to the raw signal before the
model saw it (scaling, sample rate, window, channels), recorded when ``train`` trains an
example and rendered into the generated ``td_app.h`` (``TD_APP_PRE_*``, ``td_preprocessing``)
and README.

The record travels with the model: ``train`` writes ``preprocessing.json`` beside
``model.keras`` from the example's ``PREPROCESSING`` dict plus statistics of ``x_train``;
``quantize`` copies it into ``quantization.json`` (key ``preprocessing``); ``generate`` reads
it beside the model (``quantization.json``, else a ``preprocessing.json`` -- write one
yourself for a model of your own). Without a record the header and README say
"unknown" plainly and the numeric fields are neutral (multiplier 1, offset 0).

Fields: ``text`` (one paragraph), ``unit`` (of the raw signal), ``multiplier`` and
``offset`` (model input x = raw * multiplier + offset), ``sample_rate_hz`` and ``window``
(time series; 0 otherwise), ``channels`` (values per time step or pixel), ``source`` (what
made the record) and ``train_min/max/mean/std`` (x over the training set).
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

PRE_JSON = "preprocessing.json"
QUANT_JSON = "quantization.json"
UNKNOWN_TEXT = ("unknown: this model carries no record of its preprocessing (tinydeploy "
                "records it when it trains one of its examples); feed inputs prepared "
                "exactly as in your training, or record it in a preprocessing.json beside "
                "the model (fields: tinydeploy.preprocessing) and generate again")
_NUMBERS = ("multiplier", "offset", "sample_rate_hz", "train_min", "train_max", "train_mean",
            "train_std")


def record(example: str, static: dict[str, Any], x_train: np.ndarray) -> dict[str, Any]:
    """The record of an example: its ``PREPROCESSING`` dict plus ``x_train`` statistics."""
    x = np.asarray(x_train, dtype=np.float64)
    rec: dict[str, Any] = {"source": f"training example {example}",
                           "text": str(static.get("text", "")), "unit": str(static.get("unit", "")),
                           "multiplier": float(static.get("multiplier", 1.0)),
                           "offset": float(static.get("offset", 0.0)),
                           "sample_rate_hz": float(static.get("sample_rate_hz") or 0.0),
                           "window": int(static.get("window") or 0),
                           "channels": int(static.get("channels") or 1)}
    if x.size:
        rec.update(train_min=float(x.min()), train_max=float(x.max()),
                   train_mean=float(x.mean()), train_std=float(x.std()))
    return rec


def _valid(rec: Any) -> dict[str, Any] | None:
    if not isinstance(rec, dict) or not str(rec.get("text", "")).strip():
        return None
    try:
        for key in _NUMBERS:
            if key in rec and not math.isfinite(float(rec[key])):
                return None
        int(rec.get("window") or 0)
        int(rec.get("channels") or 1)
    except (TypeError, ValueError):
        return None
    return rec


def find(model_path: str | None, quantized: bool = True) -> dict[str, Any] | None:
    """The record beside a model file (``quantization.json``'s ``preprocessing`` unless
    ``quantized`` is false, else ``preprocessing.json``); ``None`` when there is none or it
    is unreadable."""
    if not model_path or model_path.startswith("<"):
        return None
    folder = Path(model_path).parent
    places = ((QUANT_JSON, "preprocessing"), (PRE_JSON, None)) if quantized else \
        ((PRE_JSON, None),)
    for name, key in places:
        path = folder / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        rec = _valid(data.get(key) if key and isinstance(data, dict) else data)
        if rec is not None:
            return rec
    return None


def _flit(x: Any) -> str:
    """A C float literal, parenthesized when negative (safe in any macro expansion)."""
    text = f"{float(x):.9g}"
    text += "f" if any(c in text for c in ".e") else ".0f"
    return f"({text})" if text.startswith("-") else text


def _num(x: float) -> str:
    return f"{x:.6g}"


def lines(rec: dict[str, Any] | None) -> list[str]:
    """The record as short lines of text (header comment, README)."""
    if rec is None:
        return [UNKNOWN_TEXT]
    out = [str(rec["text"]).strip()]
    out.append(f"model input x = raw * {_num(float(rec.get('multiplier', 1.0)))} + "
               f"{_num(float(rec.get('offset', 0.0)))} (raw in {rec.get('unit') or 'its unit'})")
    if float(rec.get("sample_rate_hz") or 0):
        out.append(f"sample rate {_num(float(rec['sample_rate_hz']))} Hz, window "
                   f"{int(rec.get('window') or 0)} samples of {int(rec.get('channels') or 1)} "
                   "channel(s)")
    if "train_min" in rec:
        out.append(f"x over the training set: min {_num(rec['train_min'])}, max "
                   f"{_num(rec['train_max'])}, mean {_num(rec['train_mean'])}, std "
                   f"{_num(rec['train_std'])}")
    return out


def context(rec: dict[str, Any] | None, c_string: Any, comment_text: Any) -> dict[str, Any]:
    """Template context ``pre`` of ``td_app.h`` / the README (``c_string`` and
    ``comment_text`` from the callers: the generated-C quoting helpers)."""
    r = rec or {}
    wrapped = [part for line in lines(rec) for part in textwrap.wrap(line, 84)]
    return {
        "known": 1 if rec else 0,
        "source_text": comment_text(r.get("source", "not recorded")),
        "lines": [comment_text(line) for line in wrapped],
        "markdown": lines(rec),
        "text": c_string(comment_text(r.get("text") or UNKNOWN_TEXT)),
        "unit": c_string(comment_text(r.get("unit", ""))),
        "multiplier": _flit(r.get("multiplier", 1.0)), "offset": _flit(r.get("offset", 0.0)),
        "sample_rate_hz": _flit(r.get("sample_rate_hz") or 0.0),
        "window": int(r.get("window") or 0), "channels": int(r.get("channels") or 1),
        **{k: _flit(r.get(k, 0.0)) for k in ("train_min", "train_max", "train_mean",
                                              "train_std")},
    }
