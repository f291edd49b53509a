"""The data convention: one ``.npz`` with float32 splits.

Required keys: ``x_train, y_train, x_val, y_val, x_test, y_test``; optional ``x_rep``
(representative samples for quantization). ``x_*`` arrays share one sample shape; each
``y_*`` has as many rows as its ``x_*``. Labels are class indices (classifiers) or float
targets (regressors).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import TinyDeployError

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

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def representative(self) -> np.ndarray:
        return self.x_rep if self.x_rep is not None else self.x_train

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        arrays = {k: getattr(self, k) for k in (*REQUIRED, "x_rep") if getattr(self, k) is not None}
        tmp = p.with_name(p.name + ".part.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(p)
        return p


def load_data(path: str | Path, sample_shape: tuple[int, ...] | None = None) -> Dataset:
    """Load and check an ``.npz``; raise one ``bad_data`` error naming the problem and fix."""
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
    for s in SPLITS:
        nx, ny = len(arrays[f"x_{s}"]), len(arrays[f"y_{s}"])
        if nx != ny:
            raise TinyDeployError("bad_data", path=p,
                                  problem=f"x_{s} has {nx} samples but y_{s} has {ny}",
                                  fix="give every x split a label row per sample")
    return Dataset(**{k: arrays.get(k) for k in (*REQUIRED, "x_rep")})


def check_output_dir(out: str | Path) -> Path:
    """Fail early (``output_exists``) if ``out`` or one of its parents is not a folder."""
    out = Path(out)
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                raise TinyDeployError("output_exists", path=p)
            break
    return out


@contextlib.contextmanager
def staged_output(out: str | Path) -> Iterator[Path]:
    """Write into a temporary folder next to ``out``; move its entries into ``out`` only
    when the block succeeds. On error nothing new is left (not even created parents)."""
    out = check_output_dir(out)
    created: list[Path] = []
    for parent in reversed([out.parent, *out.parent.parents]):
        if not parent.exists():
            created.append(parent)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TinyDeployError("bad_argument", problem=f"cannot create {out.parent}: {exc}",
                              fix="choose a writable --out folder") from exc
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        out.mkdir(exist_ok=True)
        for entry in sorted(tmp.iterdir()):
            dest = out / entry.name
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            os.replace(entry, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
