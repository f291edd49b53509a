"""The application API of generated firmware: class labels, a stored sample, the context
of ``td_app.h`` / ``td_app.c`` (templates ``templates/_lib/``): per-tensor facts, labels,
the preprocessing record (:mod:`tinydeploy.preprocessing`), named error codes.

A user's program calls ``td_begin()`` once, then ``td_run_float(x, &r)`` (float input,
quantized with each input tensor's scale and zero point) or ``td_run_int8(q, &r)`` (the raw
input bytes ``td_invoke`` takes) and reads ``r.outputs`` (dequantized), ``r.top``,
``r.label``, ``r.score`` and ``r.us``. The same API sits on TFLite Micro and on the C
runtime (see the header comment of the generated ``td_app.h``).

Labels: ``--labels a,b,c`` or ``--labels FILE`` (one label per line, or a JSON list); else
the ``labels`` list of ``quantization.json`` beside the model (written by ``quantize`` from
the ``labels.txt`` that ``train`` writes for the examples); else, for a classifier, the
class indices ``"0"``..``"N-1"``. A regressor has no labels (``top`` is -1).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data import given_once
from .errors import TinyDeployError
from .facts import ModelFacts, TensorFacts
from .render_base import comment_text

LABELS_FILE = "labels.txt"
QUANT_JSON = "quantization.json"
MAX_LABEL = 64  # characters kept of one label (and of a tensor name)
MAX_RANK = 6  # TD_APP_MAX_RANK

# the API's own dtype codes (TFLite TensorType numbering), emitted into td_app.h
_DTYPES = {"FLOAT32": ("TD_APP_FLOAT32", 0, 4), "INT32": ("TD_APP_INT32", 2, 4),
           "INT16": ("TD_APP_INT16", 7, 2), "INT8": ("TD_APP_INT8", 9, 1)}


def c_string(text: str) -> str:
    """``text`` as a C string literal: printable ASCII kept, everything else octal-escaped,
    no trigraphs (``??``)."""
    out = []
    for byte in str(text).encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif " " <= ch <= "~" and not (ch == "?" and out and out[-1] == "?"):
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def parse_labels(spec: str | Path | list[str] | tuple[str, ...]) -> list[str]:
    """Labels from ``a,b,c``, a file (one per line, or a JSON list) or a list.

    Errors: ``bad_argument`` for an empty list or an unreadable file."""
    if isinstance(spec, list | tuple):
        labels = [str(x) for x in spec]
    else:
        text = str(spec)
        path = Path(text)
        if "," not in text and path.is_file():
            body = path.read_text(encoding="utf-8", errors="replace")
            try:
                data = json.loads(body)
            except ValueError:
                data = None
            labels = ([str(x) for x in data] if isinstance(data, list)
                      else [ln.strip() for ln in body.splitlines() if ln.strip()])
        else:
            labels = [x.strip() for x in text.split(",")]
    labels = [lab[:MAX_LABEL] for lab in labels]
    if not labels or any(not lab for lab in labels):
        raise TinyDeployError("bad_argument", problem=f"--labels {str(spec)[:80]!r} holds an "
                              "empty label", fix="pass --labels a,b,c or a file with one "
                              "label per line")
    return labels


def _beside(facts: ModelFacts) -> dict[str, Any]:
    """quantization.json (task, labels) beside the model file, if any."""
    if not facts.path or facts.path.startswith("<"):
        return {}
    folder = Path(facts.path).parent
    info: dict[str, Any] = {}
    q = folder / QUANT_JSON
    if q.is_file():
        try:
            data = json.loads(q.read_text())
            info = {k: data[k] for k in ("task", "labels") if k in data}
        except (ValueError, OSError, TypeError):
            info = {}
    if "labels" not in info and (folder / LABELS_FILE).is_file():
        info["labels"] = parse_labels(folder / LABELS_FILE)
    return info


def class_labels(facts: ModelFacts, labels: str | Path | list[str] | None = None,
                 ) -> list[str]:
    """The model's class labels (see the module docstring); ``[]`` for a regressor.

    Errors: ``bad_argument`` when the count matches neither the first output's elements
    nor 2 for a single sigmoid output."""
    n = facts.outputs[0].elements
    beside = _beside(facts)
    if labels is not None:
        found = parse_labels(labels)
    elif beside.get("labels"):
        found = [str(x) for x in beside["labels"]]
    else:
        task = beside.get("task")
        softmax = bool(facts.op_sequence) and facts.op_sequence[-1] == "SOFTMAX"
        if task == "classification" or (task is None and n > 1 and softmax):
            return [str(i) for i in range(max(n, 2))]
        return []
    if len(found) != n and not (n == 1 and len(found) == 2):
        raise TinyDeployError("bad_argument",
                              problem=f"{len(found)} labels for {n} model outputs",
                              fix=f"give exactly {n} labels (2 for a single sigmoid output)")
    return found


@dataclass(frozen=True)
class Sample:
    """One stored input for the ``basic`` example: float values of all inputs in order."""

    values: list[float]
    expected: str | None
    source: str
    zeros: bool = False  # no data: the basic example runs zeros (and says so)


def _input_floats(x: np.ndarray, t: TensorFacts) -> np.ndarray:
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.integer) and t.scale:  # already quantized: dequantize
        x = (x.astype(np.float32) - (t.zero_point or 0)) * np.float32(t.scale)
    return np.asarray(x, dtype=np.float32).reshape(-1)


def load_sample(facts: ModelFacts, data: str | Path | None, labels: list[str]) -> Sample:
    """The first test sample of ``data`` (``x_test`` or ``x_test_K``; default: ``data.npz``
    beside the model), else zeros. Errors: ``bad_data`` when its size is wrong."""
    path = Path(data) if data else None
    if path is None and facts.path and not facts.path.startswith("<"):
        cand = Path(facts.path).parent / "data.npz"
        path = cand if cand.is_file() else None
    want = sum(t.elements for t in facts.inputs)
    if path is None:
        return Sample([0.0] * want, None, "zeros: no data given (regenerate with --data "
                      "DATA.npz for a real sample)", zeros=True)
    if not path.is_file():
        raise TinyDeployError("file_not_found", what="data file", path=path)
    with np.load(path, allow_pickle=False) as npz:
        keys = (["x_test"] if "x_test" in npz and len(facts.inputs) == 1
                else [f"x_test_{k}" for k in range(len(facts.inputs))])
        if any(k not in npz for k in keys):
            raise TinyDeployError("bad_data", path=path, problem=f"no {', '.join(keys)}",
                                  fix="save the test inputs as x_test (x_test_K per input)")
        parts = [_input_floats(npz[k] if given_once(npz[k], t.sample_shape) else npz[k][0], t)
                 for k, t in zip(keys, facts.inputs, strict=True)]
        y = npz["y_test"][0] if "y_test" in npz else None
    values = np.concatenate(parts)
    if values.size != want or not np.all(np.isfinite(values)):
        raise TinyDeployError("bad_data", path=path,
                              problem=f"the first test sample has {values.size} finite values "
                                      f"of {want}", fix="match the model's input shape")
    expected = None
    if y is not None and labels:
        y = np.asarray(y).reshape(-1)
        k = int(np.argmax(y)) if y.size > 1 else int(round(float(y[0])))
        expected = labels[k] if 0 <= k < len(labels) else None
    return Sample([float(v) for v in values], expected, f"x_test[0] of {path.name}")


def api_ram(facts: ModelFacts) -> int:
    """RAM of the application API: its input and output buffers and a ``td_result_t``."""
    outs = sum(t.elements for t in facts.outputs)
    return sum(t.nbytes for t in facts.inputs) + sum(t.nbytes for t in facts.outputs) \
        + 4 * outs + 16


def _float_lit(x: float) -> str:
    if not math.isfinite(x):
        raise ValueError(f"not finite: {x}")
    text = f"{x:.9g}"
    return text + ("f" if any(c in text for c in ".e") else ".0f")


def _tensors(ts: list[TensorFacts], facts: ModelFacts, side: str) -> list[dict[str, Any]]:
    out, offset, first = [], 0, 0
    for k, t in enumerate(ts):
        if t.dtype not in _DTYPES:
            raise TinyDeployError("model_rejected", path=facts.path,
                                  problem=f"{side} {k} has type {t.dtype}",
                                  fix="quantize the model to int8 (or int16) input/output")
        if len(t.shape) > MAX_RANK:
            raise TinyDeployError("model_rejected", path=facts.path,
                                  problem=f"{side} {k} has {len(t.shape)} dimensions "
                                          f"(max {MAX_RANK})", fix="reshape the model's "
                                  f"{side}")
        code, _, size = _DTYPES[t.dtype]
        dims = [int(d) for d in t.shape]
        out.append({"k": k, "dtype": code, "count": t.elements, "offset": offset,
                    "float_offset": first, "bytes": t.elements * size,
                    "scale": _float_lit(t.scale or 1.0), "zero_point": int(t.zero_point or 0),
                    "scale_text": f"{t.scale:.9g}" if t.scale else "1 (float32)",
                    "shape": dims, "rank": len(dims), "dtype_name": t.dtype,
                    "name": c_string(comment_text(t.name)[:MAX_LABEL]),
                    "name_text": comment_text(t.name)[:MAX_LABEL],
                    "dims_init": ", ".join(map(str, dims)) or "0",
                    "dims_padded": ", ".join(map(str, dims + [0] * (MAX_RANK - len(dims))))})
        offset += t.elements * size
        first += t.elements
    return out


def api_context(facts: ModelFacts, labels: list[str], sample: Sample, runtime: str,
                name: str) -> dict[str, Any]:
    """Context of the ``templates/_lib`` files (API header/source, sample, examples)."""
    from . import preprocessing
    from .interface import interface_lines, interface_markdown

    ins = _tensors(list(facts.inputs), facts, "input")
    outs = _tensors(list(facts.outputs), facts, "output")
    return {
        "name": name, "runtime": runtime,
        "interface": [comment_text(line) for line in interface_lines(facts)],
        "interface_md": interface_markdown(facts),
        "runtime_text": "TFLite Micro" if runtime == "tflm" else "the tinydeploy C runtime",
        "backend_file": "td_tflm_app.cpp" if runtime == "tflm" else "td_app.c itself",
        "api_inputs": ins, "api_outputs": outs,
        "input_count": sum(t["count"] for t in ins),
        "output_count": sum(t["count"] for t in outs),
        "input_bytes": sum(t["bytes"] for t in ins),
        "output_bytes": sum(t["bytes"] for t in outs),
        "labels": [c_string(lab) for lab in labels], "num_labels": len(labels),
        "label_text": comment_text(", ".join(labels) if labels else "none (regressor)"),
        "binary": 1 if (labels and outs[0]["count"] == 1 and len(labels) == 2) else 0,
        "pre": preprocessing.context(preprocessing.find(facts.path), c_string, comment_text),
        "sample": {"rows": [", ".join(_float_lit(v) for v in sample.values[i:i + 8])
                            for i in range(0, len(sample.values), 8)],
                   "expected": c_string(sample.expected) if sample.expected else "0",
                   "source": comment_text(sample.source), "source_c": c_string(sample.source),
                   "zeros": 1 if sample.zeros else 0},
    }
