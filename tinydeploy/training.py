"""Stage 1, train: an example from ``examples/`` (or a user ``.keras`` model on user data)
into ``OUT/model.keras`` + ``OUT/data.npz``.

An example is a small script loaded by file path. It exposes ``make_data(seed) -> Dataset``,
``build_model() -> keras.Model`` (compiled), ``EPOCHS``, ``TASK`` and optionally
``BATCH_SIZE``; its ``__main__`` calls ``run_example_script(__file__)``. Outputs are
written to a temporary folder next to ``OUT`` and moved into place only when everything
succeeded.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from . import log as tdlog
from .data import Dataset, load_data
from .errors import TinyDeployError
from .keras_models import input_shape_of, load_keras_model, quiet_tensorflow
from .output import check_output_dir, staged_output
from .resources import examples_dir

USER_EPOCHS = 10  # default for fine-tuning a user model
USER_BATCH_SIZE = 32


@dataclass
class TrainResult:
    model_path: Path
    data_path: Path
    metrics: dict[str, float]
    task: str  # "classification" | "regression"
    name: str = ""
    epochs: int = 0
    history: dict[str, list[float]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "task": self.task, "epochs": self.epochs,
                "model_path": str(Path(self.model_path).resolve()),
                "data_path": str(Path(self.data_path).resolve()),
                "metrics": dict(self.metrics)}

    def summary(self) -> str:
        if self.task == "classification":
            score = f"test accuracy {100 * self.metrics.get('test_accuracy', float('nan')):.1f} %"
        else:
            score = f"test MAE {self.metrics.get('test_mae', float('nan')):.4f}"
        return (f"trained {self.name} ({self.task}, {self.epochs} epochs): {score}\n"
                f"  {self.model_path}\n  {self.data_path}")


def example_names() -> list[str]:
    try:
        folder = examples_dir()
    except FileNotFoundError:
        return []
    return sorted(p.stem for p in folder.glob("*.py") if not p.name.startswith("_"))


def load_example(example: str | Path) -> ModuleType:
    """Import an example by name (``sine``) or by the path of its ``.py`` file."""
    text = str(example)
    path = Path(text)
    if path.suffix == ".py":
        if not path.is_file():
            raise TinyDeployError("file_not_found", what="example script", path=path)
    else:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text) or text not in example_names():
            raise TinyDeployError("unknown_example", name=text,
                                  choices=", ".join(example_names()) or "(none installed)")
        path = examples_dir() / f"{text}.py"
    spec = importlib.util.spec_from_file_location(f"tinydeploy_example_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise TinyDeployError("unknown_example", name=text, choices=", ".join(example_names()))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for attr in ("make_data", "build_model", "EPOCHS", "TASK"):
        if not hasattr(module, attr):
            raise TinyDeployError("bad_argument", problem=f"example {path} has no {attr}",
                                  fix="define make_data(seed), build_model(), EPOCHS and TASK")
    return module


def run_example_script(script: str | Path, argv: list[str] | None = None) -> TrainResult:
    """The ``__main__`` of an example: ``python examples/NAME.py [OUT [EPOCHS]]`` trains it
    into OUT (default ``runs/NAME``) with progress shown, and prints the summary."""
    args = sys.argv[1:] if argv is None else argv
    tdlog.setup()  # show training progress
    out = args[0] if args else f"runs/{Path(script).stem}"
    epochs = int(args[1]) if len(args) > 1 else None
    result = train(script, out, epochs=epochs)
    print(result.summary())
    return result


def _is_user_model(example: str | Path) -> bool:
    return Path(str(example)).suffix in (".keras", ".h5")


def _compile_for(model: Any, task: str, y: np.ndarray) -> None:
    """Compile a user model that was saved without its training configuration."""
    if getattr(model, "compiled", False) and getattr(model, "optimizer", None) is not None:
        return
    out_dim = int(np.prod(model.output_shape[1:]))
    if task == "regression":
        model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    elif out_dim == 1:
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    elif y.ndim == 2 and y.shape[1] == out_dim:
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    else:
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])


def _progress_callback(total: int) -> Any:
    import keras

    every = max(1, total // 10)

    class LogProgress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            if (epoch + 1) % every and epoch + 1 != total:
                return
            shown = ", ".join(f"{k} {v:.4g}" for k, v in (logs or {}).items())
            tdlog.log.info("epoch %d/%d  %s", epoch + 1, total, shown)

    return LogProgress()


def fit_and_score(model: Any, data: Dataset, task: str, epochs: int,
                  batch_size: int = 32) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Fit with validation data and progress logging; return test metrics and history."""
    history = model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                        epochs=epochs, batch_size=batch_size, verbose=0,
                        callbacks=[_progress_callback(epochs)])
    pred = np.asarray(model.predict(data.x_test, batch_size=256, verbose=0))
    metrics = {"test_" + k: v for k, v in score(task, pred, data.y_test).items()}
    for key, values in history.history.items():
        metrics["final_" + key] = float(values[-1])
    return metrics, {k: [float(v) for v in vs] for k, vs in history.history.items()}


def score(task: str, pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """``accuracy`` for classifiers, ``mae`` for regressors (shared with quantize)."""
    from .quantization import metric

    name, value = metric(task, pred, y)
    return {name: value}


def train(example: str | Path, out: str | Path, epochs: int | None = None,
          data: str | Path | None = None, seed: int = 0) -> TrainResult:
    """Train an example (name or ``.py`` path) or fine-tune a ``.keras`` model on ``data``.

    Progress (one line per epoch) goes to the ``tinydeploy`` logger, shown on stderr
    unless the application configured logging itself.

    Args:
        example: ``sine``, ``digits``, ``vibration``, an example ``.py`` or a ``.keras``.
        out: output folder for ``model.keras`` and ``data.npz``.
        epochs: override the example's epochs.
        data: ``.npz`` data (required with a ``.keras`` model).
        seed: random seed.

    Returns:
        A :class:`TrainResult` (paths, task, metrics).

    Raises:
        TinyDeployError: unknown example, missing/bad data or model, bad epochs (exit 2).
    """
    out = check_output_dir(out)
    if epochs is not None and epochs < 1:
        raise TinyDeployError("bad_argument", problem=f"--epochs must be >= 1, got {epochs}",
                              fix="pass a positive number of epochs")
    if _is_user_model(example):
        if data is None:
            raise TinyDeployError("bad_argument",
                                  problem="training a .keras model needs --data DATA.npz",
                                  fix="pass --data with the .npz data convention (see README)")
        model = load_keras_model(example)
        dataset = load_data(data, sample_shape=input_shape_of(model, example))
        from .quantization import task_of

        task = task_of(model, dataset.y_train)
        _compile_for(model, task, dataset.y_train)
        name, n_epochs, batch = Path(str(example)).stem, epochs or USER_EPOCHS, USER_BATCH_SIZE
        _seed(seed)
    else:
        module = load_example(example)
        name = Path(str(example)).stem
        n_epochs = int(epochs or module.EPOCHS)
        batch = int(getattr(module, "BATCH_SIZE", 32))
        task = str(module.TASK)
        _seed(seed)
        dataset = load_data(data) if data is not None else module.make_data(seed)
        model = module.build_model()
        if data is not None and tuple(model.input_shape[1:]) != dataset.sample_shape:
            raise TinyDeployError(
                "bad_data", path=data,
                problem=f"samples have shape {dataset.sample_shape}, the {name} model "
                        f"expects {tuple(model.input_shape[1:])}",
                fix="reshape the data to the model's input shape (without the batch axis)")

    tdlog.stage("train", f"{name}: {len(dataset.x_train)} training samples, {n_epochs} epochs")
    try:
        metrics, history = fit_and_score(model, dataset, task, n_epochs, batch)
    except Exception as exc:
        import tensorflow as tf

        if data is None or not isinstance(exc, ValueError | tf.errors.InvalidArgumentError):
            raise  # the example's own data, or not a data problem: a bug
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        why = next((ln for ln in lines if "label value" in ln), lines[0] if lines else "")
        why = why.split("  Label values")[0]
        raise TinyDeployError("bad_data", path=data,
                              problem=f"the labels do not fit the model "
                                      f"({why[:200] or type(exc).__name__})",
                              fix="give y one class index per sample, one-hot rows as wide "
                                  "as the model's output, or regression targets of its shape"
                              ) from exc
    classes = getattr(module, "CLASSES", None) if not _is_user_model(example) else None
    pre = getattr(module, "PREPROCESSING", None) if not _is_user_model(example) else None
    with staged_output(out) as tmp:
        model.save(tmp / "model.keras")
        dataset.save(tmp / "data.npz")
        if classes:  # class labels, carried by quantize into quantization.json
            (tmp / "labels.txt").write_text("".join(f"{c}\n" for c in classes))
        if pre and data is None:  # what the example did to its inputs (ditto)
            from . import preprocessing

            rec = preprocessing.record(name, pre, dataset.x_train)
            (tmp / preprocessing.PRE_JSON).write_text(json.dumps(rec, indent=2) + "\n")
    result = TrainResult(model_path=out / "model.keras", data_path=out / "data.npz",
                         metrics=metrics, task=task, name=name, epochs=n_epochs,
                         history=history)
    tdlog.log.info("%s", result.summary().splitlines()[0])
    return result


def _seed(seed: int) -> None:
    quiet_tensorflow()
    import keras

    keras.utils.set_random_seed(seed)
