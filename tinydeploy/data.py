"""The data convention: one ``.npz`` with float32 splits (``load_data``), or just the split a
stage needs (``load_split``: ``validate`` reads only ``x_test`` and, if present, ``y_test``).

Required keys: ``x_train, y_train, x_val, y_val, x_test, y_test``; optional ``x_rep``
(representative samples for quantization). ``x_*`` arrays share one sample shape; each
``y_*`` has as many rows as its ``x_*``. Labels are class indices (classifiers) or float
targets (regressors). A model with several inputs takes one array per input in model input
order: ``x_test_0``, ``x_test_1``, ... (likewise ``x_train_K``, ``x_rep_K``); a single-input
model keeps ``x_test``. An input without a batch axis (a rank-0 or [64] tensor, a shape
operand) takes ``[N, *shape]`` like any other, or its value once (an array of exactly its
shape, see ``load_split``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import TinyDeployError
from .output import write_atomic

SPLITS = ("train", "val", "test")
REQUIRED = tuple(f"{p}_{s}" for s in SPLITS for p in ("x", "y"))


@dataclass
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_rep: np.ndarray | None = None

    @classmethod
    def split(cls, x: np.ndarray, y: np.ndarray, train: float = 0.6,
              val: float = 0.2) -> Dataset:
        """Split in order: the first ``train`` fraction trains, the next ``val`` fraction
        validates, the rest tests (shuffle before if the samples are ordered)."""
        n_train, n_val = int(train * len(x)), int(val * len(x))
        return cls(x_train=x[:n_train], y_train=y[:n_train],
                   x_val=x[n_train:n_train + n_val], y_val=y[n_train:n_train + n_val],
                   x_test=x[n_train + n_val:], y_test=y[n_train + n_val:])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def representative(self) -> np.ndarray:
        return self.x_rep if self.x_rep is not None else self.x_train

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        arrays = {k: getattr(self, k) for k in (*REQUIRED, "x_rep") if getattr(self, k) is not None}
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        return write_atomic(p, buf.getvalue())


def load_data(path: str | Path, sample_shape: tuple[int, ...] | None = None) -> Dataset:
    """Load and check an ``.npz`` (see the README's data convention).

    Args:
        path: the ``.npz`` file.
        sample_shape: expected shape of one sample (without the batch axis), if known.

    Returns:
        A :class:`Dataset` with the train/val/test splits (and ``x_rep`` if present).

    Raises:
        TinyDeployError: ``file_not_found``, or one ``bad_data`` error naming the problem
            (missing key, wrong shape, mismatched lengths) and the fix.
    """
    p = Path(path)
    if not p.is_file():
        raise TinyDeployError("file_not_found", what="data file", path=p)
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:
        raise TinyDeployError("bad_data", path=p, problem=f"not a readable .npz ({exc})",
                              fix="save it with numpy.savez(path, x_train=..., ...)") from exc
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise TinyDeployError("bad_data", path=p, problem=f"missing keys {', '.join(missing)}",
                              fix=f"the .npz needs {', '.join(REQUIRED)} (optional x_rep)")
    for key in (*REQUIRED, "x_rep"):
        if key in arrays and not (np.issubdtype(arrays[key].dtype, np.number)
                                  or arrays[key].dtype == np.bool_):
            raise TinyDeployError("bad_data", path=p,
                                  problem=f"{key} holds {arrays[key].dtype} values, not numbers",
                                  fix="store numeric (float32) arrays")
        if key in arrays and arrays[key].ndim == 0:
            raise TinyDeployError("bad_data", path=p, problem=f"{key} is a single number",
                                  fix="store one row per sample ([N, ...] arrays)")
    shape = sample_shape or tuple(arrays["x_train"].shape[1:])
    for key in ("x_train", "x_val", "x_test", "x_rep"):
        if key in arrays:
            got = tuple(arrays[key].shape[1:])
            if got != tuple(shape):
                raise TinyDeployError(
                    "bad_data", path=p,
                    problem=f"{key} samples have shape {got}, expected {tuple(shape)}",
                    fix="reshape the data to the model's input shape (without the batch axis)")
            if arrays[key].shape[0] == 0:
                raise TinyDeployError("bad_data", path=p, problem=f"{key} is empty",
                                      fix="provide at least one sample per split")
            arrays[key] = arrays[key].astype(np.float32)
    for key in (*REQUIRED, "x_rep"):
        if key in arrays and not np.all(np.isfinite(arrays[key])):
            raise TinyDeployError("bad_data", path=p, problem=f"{key} contains NaN or inf",
                                  fix="remove or replace the non-finite values")
    label_shapes = {s: tuple(np.shape(arrays[f"y_{s}"])[1:]) for s in SPLITS}
    if len(set(label_shapes.values())) > 1:
        shown = ", ".join(f"y_{s} {v}" for s, v in label_shapes.items())
        raise TinyDeployError("bad_data", path=p,
                              problem=f"label rows differ between splits ({shown})",
                              fix="give every y split the same label shape ([N] or [N, k])")
    for s in SPLITS:
        nx, ny = len(arrays[f"x_{s}"]), len(arrays[f"y_{s}"])
        if nx != ny:
            raise TinyDeployError("bad_data", path=p,
                                  problem=f"x_{s} has {nx} samples but y_{s} has {ny}",
                                  fix="give every x split a label row per sample")
    return Dataset(**{k: arrays.get(k) for k in (*REQUIRED, "x_rep")})


def input_keys(split: str, n_inputs: int) -> list[str]:
    """Keys of one split's input arrays: ``x_test`` for a single-input model, ``x_test_0``,
    ``x_test_1``, ... (model input order) for several inputs; likewise ``x_train_K``,
    ``x_rep_K``."""
    return [f"x_{split}"] if n_inputs == 1 else [f"x_{split}_{k}" for k in range(n_inputs)]


def given_once(x: np.ndarray, sample_shape: tuple[int, ...] | None) -> bool:
    """Is ``x`` one value of an input given once for every sample (its shape is the
    sample shape itself, no sample axis: a constant such as a shape operand)?"""
    return sample_shape is not None and tuple(np.shape(x)) == tuple(sample_shape)


def load_split(path: str | Path, split: str = "test", n_inputs: int = 1,
               sample_shapes: list[tuple[int, ...]] | None = None,
               ) -> tuple[list[np.ndarray], np.ndarray | None]:
    """One split of an ``.npz`` without demanding the others (or an ``.npy`` holding the
    samples of a single-input model, no labels): its inputs (one array per model
    input, see ``input_keys``; dtypes kept, so int8/int16 data already quantized stays as
    is) and its labels ``y_<split>`` when present (else None).

    ``sample_shapes`` (one per input): an array whose shape is its input's sample shape is
    a constant given once (:func:`given_once`; a 0-d array for a scalar input), returned
    as it is and left out of the sample-count check; every other array has the sample
    axis first.

    Raises ``TinyDeployError("bad_data")`` naming the missing key, empty or non-numeric
    array, NaN/inf, or differing sample counts; ``file_not_found`` for a missing file.
    """
    p = Path(path)
    if not p.is_file():
        raise TinyDeployError("file_not_found", what="data file", path=p)
    keys = input_keys(split, n_inputs)
    if p.suffix.lower() == ".npy":  # one array: the samples of a single-input model
        if n_inputs != 1:
            raise TinyDeployError("bad_data", path=p,
                                  problem=f"one .npy array for a model of {n_inputs} inputs",
                                  fix=f"save an .npz with {', '.join(keys)}")
        try:
            xs, y = [np.load(p, allow_pickle=False)], None
        except Exception as exc:
            raise TinyDeployError("bad_data", path=p, problem=f"not a readable .npy ({exc})",
                                  fix="save it with numpy.save(path, samples)") from exc
        return _checked_split(p, split, keys, xs, y, sample_shapes)
    try:
        with np.load(p, allow_pickle=False) as z:
            if n_inputs == 1 and keys[0] not in z.files and f"x_{split}_0" in z.files:
                keys = [f"x_{split}_0"]
            missing = [k for k in keys if k not in z.files]
            if missing:
                many = f" (one array per model input: {', '.join(keys)})" if n_inputs > 1 else ""
                raise TinyDeployError("bad_data", path=p,
                                      problem=f"missing key {', '.join(missing)}{many}",
                                      fix=f"save the inputs as {', '.join(keys)} "
                                          f"(labels y_{split} optional)")
            xs = [z[k] for k in keys]
            y = z[f"y_{split}"] if f"y_{split}" in z.files else None
    except TinyDeployError:
        raise
    except Exception as exc:
        raise TinyDeployError("bad_data", path=p, problem=f"not a readable .npz ({exc})",
                              fix="save it with numpy.savez(path, x_test=..., ...)") from exc
    return _checked_split(p, split, keys, xs, y, sample_shapes)


def _checked_split(p: Path, split: str, keys: list[str], xs: list[np.ndarray],
                   y: np.ndarray | None, sample_shapes: list[tuple[int, ...]] | None
                   ) -> tuple[list[np.ndarray], np.ndarray | None]:
    """``load_split``'s checks of the arrays read from ``p`` (see there)."""
    once = [given_once(x, None if sample_shapes is None else sample_shapes[k])
            for k, x in enumerate(xs)]
    for key, x, one in zip(keys, xs, once, strict=True):
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) \
                or (x.ndim == 0 and not one):
            raise TinyDeployError("bad_data", path=p,
                                  problem=f"{key} holds {x.dtype} {x.shape}, not numbers per "
                                          "sample",
                                  fix="store one numeric row per sample ([N, ...] arrays)")
        if x.size == 0 or (not one and len(x) == 0):
            raise TinyDeployError("bad_data", path=p, problem=f"{key} is empty",
                                  fix="provide at least one sample")
        if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
            raise TinyDeployError("bad_data", path=p, problem=f"{key} contains NaN or inf",
                                  fix="remove or replace the non-finite values")
    counts = {k: len(x) for k, x, one in zip(keys, xs, once, strict=True) if not one}
    if y is not None:
        counts[f"y_{split}"] = len(y) if y.ndim else 0
    if len(set(counts.values())) > 1:
        shown = ", ".join(f"{k} {n}" for k, n in counts.items())
        raise TinyDeployError("bad_data", path=p, problem=f"sample counts differ ({shown})",
                              fix="give every array one row per sample")
    return xs, y


def check_labels(y: np.ndarray, out_elements: int, path: str | Path, key: str = "y_test",
                 output: str = "output") -> np.ndarray:
    """Labels a validation can score against the model's first output, or one ``bad_data``
    error naming the problem: numbers (not strings), finite, per sample either one value
    or as many as the output has (one-hot rows, regression targets; any layout), and one
    value per sample of a wider output is a class index in 0..K-1.

    Args:
        y: the labels, sample axis first (counts are checked by :func:`load_split`).
        out_elements: values per sample of the model's first output.
        path: the data file (named in the error).
        key: the labels' key in the file.
        output: the output's name (named in the error).

    Returns:
        ``y`` unchanged.
    """
    y = np.asarray(y)
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
        kind = "strings" if y.dtype.kind in "US" else str(y.dtype)
        raise TinyDeployError("bad_data", path=path,
                              problem=f"{key} holds {kind}, not numbers",
                              fix="store class indices 0..K-1 (class names go in labels.txt "
                                  "beside the model) or numeric targets")
    if y.ndim == 0 or (np.issubdtype(y.dtype, np.floating) and not np.all(np.isfinite(y))):
        problem = "a single number" if y.ndim == 0 else "NaN or inf"
        raise TinyDeployError("bad_data", path=path, problem=f"{key} holds {problem}",
                              fix="give one finite label row per sample")
    per = int(np.prod(y.shape[1:])) if y.ndim > 1 else 1
    if per not in (1, out_elements):
        raise TinyDeployError(
            "bad_data", path=path,
            problem=f"{key} has {per} values per sample (shape {tuple(y.shape)}) but the "
                    f"model's {output} has {out_elements}",
            fix=f"give class indices [N] or rows of {out_elements} values (one-hot or "
                "targets) per sample")
    if per == 1 and out_elements > 1 and y.size:
        v = y.reshape(-1).astype(np.float64)
        if not (np.all(v == np.round(v)) and v.min() >= 0 and v.max() < out_elements):
            raise TinyDeployError(
                "bad_data", path=path,
                problem=f"{key} holds one value per sample for a {out_elements}-value "
                        f"output, but not class indices 0..{out_elements - 1} (values "
                        f"{v.min():g}..{v.max():g})",
                fix=f"give class indices 0..{out_elements - 1}, or one-hot rows of "
                    f"{out_elements} values")
    return y

