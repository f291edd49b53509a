"""Stage 2, quantize: Keras model -> full-int8 ``.tflite`` (plus a float reference) and a
quantization report.

Conversion fixes the batch dimension to 1 (a concrete function with a ``[1, ...]`` input
signature) so that ``Flatten`` becomes one RESHAPE instead of SHAPE/STRIDED_SLICE/PACK.
Full int8: ``Optimize.DEFAULT``, a representative dataset, ``TFLITE_BUILTINS_INT8``, int8
input and output. The int8 model is checked by the guard and scored in the TFLM Python
runtime on ``x_test``; outputs are staged in a temporary folder and moved into ``OUT``
only when everything passed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import log as tdlog
from .data import Dataset, load_data
from .errors import TinyDeployError
from .facts import ModelFacts, TensorFacts
from .facts import load as load_facts
from .output import check_output_dir, staged_output

INT8_NAME, FLOAT_NAME = "model_int8.tflite", "model_float.tflite"
JSON_NAME, MD_NAME = "quantization.json", "quantization.md"
QUANTIZE_FORMULA = "q = round(x / S) + Z"
IO_TYPES = {"int8": "int8", "float": "float32"}  # quantize --io -> inference_input_type
DEQUANTIZE_FORMULA = "x = (q - Z) * S"


# --- task and metric (shared with train and validate) ----------------------------------
def _final_activation(model_or_facts: Any) -> tuple[int, str | None]:
    """(output elements per sample, "softmax" | "sigmoid" | None) of a Keras model/facts."""
    if isinstance(model_or_facts, str | Path | bytes | bytearray):
        p = Path(model_or_facts) if not isinstance(model_or_facts, bytes | bytearray) else None
        if p is not None and p.suffix in (".keras", ".h5"):
            from .keras_models import load_keras_model

            model_or_facts = load_keras_model(p)
        else:
            model_or_facts = load_facts(model_or_facts)
    if isinstance(model_or_facts, ModelFacts):
        facts = model_or_facts
        out_dim = int(np.prod(facts.outputs[0].shape[1:])) if facts.outputs else 1
        last = facts.op_sequence[-1] if facts.op_sequence else ""
        if last in ("QUANTIZE", "DEQUANTIZE") and len(facts.op_sequence) > 1:
            last = facts.op_sequence[-2]
        return out_dim, {"SOFTMAX": "softmax", "LOGISTIC": "sigmoid"}.get(last)
    model = model_or_facts
    out_dim = int(np.prod(model.output_shape[1:]))
    layer = model.layers[-1] if getattr(model, "layers", None) else None
    kind = type(layer).__name__.lower() if layer is not None else ""
    if kind == "softmax":
        return out_dim, "softmax"
    act = getattr(getattr(layer, "activation", None), "__name__", "")
    return out_dim, act if act in ("softmax", "sigmoid") else None


def task_of(model_or_facts: Any, y: np.ndarray) -> str:
    """"classification" or "regression" for a Keras model (or ``.keras`` path) or int8
    ``ModelFacts`` (or ``.tflite`` path) and its labels ``y``.

    Classification: integer labels in [0, outputs) with more than one output, one-hot
    labels, or 0/1 labels with a sigmoid output. Everything else is regression.
    """
    out_dim, final = _final_activation(model_or_facts)
    y = np.asarray(y)
    if y.size == 0:
        return "regression"
    rows = y.reshape(len(y), -1)
    integral = bool(np.all(rows == np.round(rows))) and float(rows.min()) >= 0
    if rows.shape[1] > 1:
        one_hot = integral and rows.shape[1] == out_dim and bool(np.all(rows.sum(1) == 1))
        return "classification" if one_hot else "regression"
    if integral and out_dim > 1 and float(rows.max()) < out_dim:
        return "classification"
    if integral and out_dim == 1 and final == "sigmoid" and float(rows.max()) <= 1:
        return "classification"
    return "regression"


def metric(task: str, pred: np.ndarray, y: np.ndarray) -> tuple[str, float]:
    """("accuracy", fraction) for classifiers, ("mae", mean |pred - y|) for regressors."""
    pred = np.asarray(pred, dtype=np.float32).reshape(len(pred), -1)
    y = np.asarray(y, dtype=np.float32).reshape(len(y), -1)
    if task == "classification":
        labels = y.argmax(1) if y.shape[1] > 1 else np.round(y[:, 0])
        guess = pred.argmax(1) if pred.shape[1] > 1 else (pred[:, 0] > 0.5)
        return "accuracy", float(np.mean(guess.astype(np.int64) == labels.astype(np.int64)))
    return "mae", float(np.mean(np.abs(pred - y)))


def _abs(path: str | Path) -> str:
    """A path for JSON: absolute, so it is valid from any working folder."""
    return str(Path(path).resolve())


# --- conversion --------------------------------------------------------------------------
def representative(data: Dataset, samples: int = 200, seed: int = 0) -> np.ndarray:
    """``samples`` rows of ``x_rep`` (or ``x_train``), a fixed random subset when larger."""
    pool = data.representative
    if len(pool) <= samples:
        return pool
    idx = np.sort(np.random.default_rng(seed).choice(len(pool), size=samples, replace=False))
    return pool[idx]


def to_tflite(model: Any, rep: np.ndarray | None = None, *, optimize: bool = True,
              io_type: str = "int8", converter_defaults: bool = False) -> bytes:
    """Convert a single-input Keras model with batch fixed to 1.

    ``optimize=False``: float model. ``optimize=True`` with ``rep``: full integer
    (TFLITE_BUILTINS_INT8, ``io_type`` input/output; Dense weights per tensor, as every
    Arduino TFLM library computes FULLY_CONNECTED right only then). ``optimize=True``
    without ``rep``: dynamic-range ("hybrid") model -- what the guard rejects; used by its
    tests. ``converter_defaults``: only ``optimizations`` and the representative dataset,
    everything else as TFLiteConverter's defaults (float32 interface around the int8 core,
    per-channel Dense weights): the models users bring.
    """
    from .keras_models import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    from .hostref import warn_untested_tensorflow

    warn_untested_tensorflow(str(tf.__version__))
    raw = str(getattr(model.inputs[0], "name", "") or "input")
    name = re.sub(r"[^A-Za-z0-9_.]", "_", raw).lstrip("_.") or "input"
    spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32, name=name)
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    with _quiet_python():  # without trackable_obj: variables are frozen (wanted here)
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [fn.get_concrete_function()])
    if optimize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if optimize and rep is not None:
        rep = np.asarray(rep, dtype=np.float32)

        def dataset() -> Any:
            for sample in rep:
                yield [sample[np.newaxis]]

        converter.representative_dataset = dataset
        if converter_defaults:
            return _quiet_convert(converter)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = getattr(tf, io_type)
        converter.inference_output_type = getattr(tf, io_type)
        # one weight scale per Dense layer: the TFLM in the Arduino libraries (Chirale 2.0.0,
        # TFLM of January 2023) ignores per-channel FULLY_CONNECTED scales (tflm_libraries)
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    return _quiet_convert(converter)


@contextlib.contextmanager
def _quiet_python() -> Iterator[None]:
    """Hide the converter's Python warnings and absl deprecation notes."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        absl.setLevel(level)


def _quiet_convert(converter: Any) -> bytes:
    from .hostref import capture_fd2

    result: dict[str, bytes] = {}
    with _quiet_python():
        chatter = capture_fd2(lambda: result.setdefault("model", converter.convert()))
    if chatter.strip():
        tdlog.log.debug("converter: %s", chatter.strip()[-2000:])
    return result["model"]


# --- report ------------------------------------------------------------------------------
def tensor_entry(role: str, t: TensorFacts, inner: TensorFacts | None = None
                 ) -> dict[str, Any]:
    """One input/output row of the report; ``inner``: the quantized tensor behind a float32
    boundary tensor (its QUANTIZE/DEQUANTIZE runs on the device with these parameters)."""
    q = inner or t
    entry: dict[str, Any] = {"role": role, "name": t.name, "shape": list(t.shape),
                             "dtype": t.dtype, "scale": q.scale, "zero_point": q.zero_point}
    if inner is not None:
        entry["boundary"] = (f"{'QUANTIZE to' if role == 'input' else 'DEQUANTIZE from'} "
                             f"{inner.dtype} on the device")
    if q.scale is not None:
        entry["quantize"] = f"q = round(x / {q.scale:.9g}) + ({q.zero_point})"
        entry["dequantize"] = f"x = (q - ({q.zero_point})) * {q.scale:.9g}"
    return entry


@dataclass
class QuantReport:
    model_path: Path
    data_path: Path
    int8_path: Path
    float_path: Path
    json_path: Path
    md_path: Path
    task: str
    metric: str  # "accuracy" | "mae"
    float_metric: float
    int8_metric: float
    test_samples: int
    sizes: dict[str, int]
    tensors: list[dict[str, Any]]
    ops: list[str]
    rep_samples: int
    rep_source: str
    notes: list[str] = field(default_factory=list)
    io: str = "int8"  # the interface the converter wrote: int8 I/O, or float32 I/O

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": _abs(self.model_path), "data": _abs(self.data_path),
            "outputs": {"int8": _abs(self.int8_path), "float": _abs(self.float_path),
                        "json": _abs(self.json_path), "markdown": _abs(self.md_path)},
            "task": self.task,
            "metric": {"name": self.metric, "keras_float": self.float_metric,
                       "tflm_int8": self.int8_metric,
                       "delta": self.int8_metric - self.float_metric,
                       "test_samples": self.test_samples},
            "sizes_bytes": dict(self.sizes),
            "tensors": self.tensors,
            "formula": {"quantize": QUANTIZE_FORMULA, "dequantize": DEQUANTIZE_FORMULA,
                        "clip": "q is clipped to [-128, 127]"},
            "ops": list(self.ops),
            "representative": {"samples": self.rep_samples, "source": self.rep_source},
            "converter": {"optimizations": ["DEFAULT"], "supported_ops": ["TFLITE_BUILTINS_INT8"],
                          "inference_input_type": IO_TYPES[self.io],
                          "inference_output_type": IO_TYPES[self.io], "batch": 1},
            "interface": self.io,
        }

    def _fmt(self, value: float) -> str:
        return f"{100 * value:.2f} %" if self.metric == "accuracy" else f"{value:.4f}"

    def summary(self) -> str:
        kib = {k: f"{v / 1024:.1f} KiB" for k, v in self.sizes.items()}
        lines = [
            f"int8 model: {self.int8_path} ({kib['int8_tflite']}; float .tflite "
            f"{kib['float_tflite']}, .keras {kib['keras']})",
            f"test {self.metric} on {self.test_samples} samples: Keras float "
            f"{self._fmt(self.float_metric)}, TFLM int8 {self._fmt(self.int8_metric)}",
        ]
        for t in self.tensors:
            via = f" ({t['boundary']})" if t.get("boundary") else ""
            lines.append(f"{t['role']:<6} {t['name']} {t['dtype']} {t['shape']} "
                         f"S={t['scale']:.6g} Z={t['zero_point']}{via}")
        lines.append(f"report: {self.md_path}")
        return "\n".join(lines)

    def markdown(self) -> str:
        s = self.sizes
        rows = [
            f"# Quantization report: {self.model_path.name}", "",
            f"Full-int8 conversion (Optimize.DEFAULT, TFLITE_BUILTINS_INT8, "
            f"{IO_TYPES[self.io]} input and output, batch 1) with {self.rep_samples} "
            f"representative samples from `{self.rep_source}`.", "",
            "| file | bytes |", "|---|---:|",
            f"| {self.model_path.name} (Keras) | {s['keras']} |",
            f"| {FLOAT_NAME} | {s['float_tflite']} |",
            f"| {INT8_NAME} | {s['int8_tflite']} |", "",
            f"## Test {self.metric} ({self.task}, {self.test_samples} samples of x_test)", "",
            "| model | " + self.metric + " |", "|---|---:|",
            f"| Keras float32 | {self._fmt(self.float_metric)} |",
            f"| int8 in the TFLM runtime | {self._fmt(self.int8_metric)} |", "",
            "## Input and output quantization", "",
            f"Quantize: `{QUANTIZE_FORMULA}` (clipped to [-128, 127]); "
            f"dequantize: `{DEQUANTIZE_FORMULA}`.", "",
            "| tensor | name | shape | dtype | scale S | zero point Z |",
            "|---|---|---|---|---:|---:|",
        ]
        rows += [f"| {t['role']} | {t['name']} | {t['shape']} | {t['dtype']}"
                 f"{' (' + t['boundary'] + ')' if t.get('boundary') else ''} | "
                 f"{t['scale']:.9g} | {t['zero_point']} |" for t in self.tensors]
        rows += ["", f"Operators: {', '.join(self.ops)}", ""]
        rows += [f"Note: {n}" for n in self.notes]
        return "\n".join(rows).rstrip() + "\n"


# --- the stage ---------------------------------------------------------------------------
def evaluate_int8(facts: ModelFacts, x: np.ndarray) -> np.ndarray:
    """Dequantized outputs of the int8 model in the host reference (the TFLM Python
    runtime, else a stand-in: ``hostref_native``)."""
    from .hostref import dequantize, quantize_input
    from .hostref_native import reference_model

    try:
        host = reference_model(facts)
    except RuntimeError:  # larger than the default 1 MiB arena
        host = reference_model(facts, arena_size=16 << 20)
    q = quantize_input(x, facts.inputs[0])
    try:
        return dequantize(host.predict(q), facts.outputs[0])
    finally:
        host.close()


def quantize(model: str | Path, data: str | Path, out: str | Path,
             rep_samples: int = 200, io: str = "int8") -> QuantReport:
    """Full-int8 quantize ``model`` (.keras) with ``data`` (.npz); write model_int8.tflite,
    model_float.tflite, quantization.json and quantization.md into ``out``.

    Args:
        model: Keras ``.keras`` model.
        data: ``.npz`` data (``x_rep`` or ``x_train`` for calibration, ``x_test``/``y_test``
            for the float-vs-int8 metric).
        out: output folder.
        rep_samples: representative samples used for calibration.
        io: the interface of the int8 model: ``int8`` (int8 input and output) or
            ``float`` (float32 input and output around the int8 core: a QUANTIZE first, a
            DEQUANTIZE last, what the converter writes by default;
            :mod:`tinydeploy.interface`).

    Returns:
        A :class:`QuantReport` (paths, metric float vs int8, sizes, tensor scales).

    Raises:
        TinyDeployError: missing/bad model or data (exit 2); the guard rejects the
            converted model (exit 3). Nothing is written then.
    """
    from .guard import check
    from .interface import float_boundaries
    from .keras_models import input_shape_of, load_keras_model

    model_path, data_path, out = Path(model), Path(data), Path(out)
    if io not in IO_TYPES:
        raise TinyDeployError("bad_argument", problem=f"unknown --io {io!r}",
                              fix="choose --io int8 (int8 input and output) or float (float32 "
                                  "input and output around the int8 core)")
    if rep_samples < 1:
        raise TinyDeployError("bad_argument", problem=f"--rep-samples must be >= 1, got "
                              f"{rep_samples}", fix="use e.g. --rep-samples 200")
    check_output_dir(out)
    if not model_path.is_file():
        raise TinyDeployError("file_not_found", what="Keras model", path=model_path)
    if not data_path.is_file():
        raise TinyDeployError("file_not_found", what="data file", path=data_path)
    keras_model = load_keras_model(model_path)
    dataset = load_data(data_path, sample_shape=input_shape_of(keras_model, model_path))
    task = task_of(keras_model, dataset.y_test)
    rep = representative(dataset, rep_samples)
    rep_source = "x_rep" if dataset.x_rep is not None else "x_train"
    tdlog.stage("quantize", f"{model_path.name}: full int8 with {len(rep)} representative "
                            f"samples from {rep_source}")
    try:
        float_bytes = to_tflite(keras_model, optimize=False)
        int8_bytes = to_tflite(keras_model, rep, io_type=IO_TYPES[io])
    except Exception as exc:
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        raise TinyDeployError("model_rejected", path=model_path,
                              problem=f"TFLite conversion failed: "
                                      f"{(lines[-1] if lines else type(exc).__name__)[:200]}",
                              fix="use layers TFLite supports in int8 (Dense, Conv, pooling, "
                                  "ReLU, softmax, ...)") from exc

    with staged_output(out) as tmp:
        (tmp / INT8_NAME).write_bytes(int8_bytes)
        (tmp / FLOAT_NAME).write_bytes(float_bytes)
        # the guard raises on rejection, and staged_output then removes everything
        facts = check(ModelFacts.from_bytes(int8_bytes, str(out / INT8_NAME)))
        inner = {b.outer.index: b.inner for b in float_boundaries(facts)}
        tdlog.stage("quantize", f"scoring {len(dataset.x_test)} test samples (Keras float vs "
                                "TFLM int8)")
        float_pred = np.asarray(keras_model.predict(dataset.x_test, batch_size=256, verbose=0))
        int8_pred = evaluate_int8(facts, dataset.x_test)
        name, float_value = metric(task, float_pred, dataset.y_test)
        _, int8_value = metric(task, int8_pred, dataset.y_test)
        report = QuantReport(
            model_path=model_path, data_path=data_path,
            int8_path=out / INT8_NAME, float_path=out / FLOAT_NAME,
            json_path=out / JSON_NAME, md_path=out / MD_NAME,
            task=task, metric=name, float_metric=float_value, int8_metric=int8_value,
            test_samples=len(dataset.x_test),
            sizes={"keras": model_path.stat().st_size, "float_tflite": len(float_bytes),
                   "int8_tflite": len(int8_bytes)},
            tensors=[tensor_entry("input", t, inner.get(t.index)) for t in facts.inputs]
            + [tensor_entry("output", t, inner.get(t.index)) for t in facts.outputs],
            ops=facts.op_names, rep_samples=len(rep), rep_source=rep_source, io=io,
        )
        data = report.to_dict()
        labels_file = model_path.parent / "labels.txt"  # written by train for the examples
        if task == "classification" and labels_file.is_file():
            data["labels"] = [ln.strip() for ln in labels_file.read_text().splitlines()
                              if ln.strip()]
        from .preprocessing import find

        pre = find(str(model_path), quantized=False)  # train: the example's preprocessing
        if pre is not None:
            data["preprocessing"] = pre
        (tmp / JSON_NAME).write_text(json.dumps(data, indent=2) + "\n")
        (tmp / MD_NAME).write_text(report.markdown())
    tdlog.log.info("%s", report.summary().splitlines()[1])
    return report
