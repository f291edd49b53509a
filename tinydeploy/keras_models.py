"""Loading Keras models: TensorFlow imported quietly, one clear error per bad file, the
static input shape.

Shared by :mod:`tinydeploy.training` and :mod:`tinydeploy.quantization`; training imports
quantization (its task and metric), never the other way.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from . import log as tdlog
from .errors import TinyDeployError

_TF_READY: list[bool] = []


def quiet_tensorflow() -> None:
    """Import TensorFlow and Keras once with their C++ start-up chatter (CUDA probing, absl
    banners) captured and logged at debug level; call before using TF or keras."""
    if _TF_READY:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from .hostref import capture_fd2

    def _import() -> None:
        import keras  # noqa: F401
        import tensorflow as tf

        tf.config.list_physical_devices()  # triggers (and hides) the CUDA probe

    chatter = capture_fd2(_import)
    if chatter.strip():
        tdlog.log.debug("tensorflow start-up: %s", chatter.strip()[-1000:])
    _TF_READY.append(True)


def load_keras_model(path: str | Path) -> Any:
    """``keras.models.load_model`` with one clear error for a missing or unreadable file."""
    p = Path(path)
    if not p.is_file():
        raise TinyDeployError("file_not_found", what="Keras model", path=p)
    if p.suffix not in (".keras", ".h5"):
        raise TinyDeployError("bad_model_file", path=p,
                              problem=f"expected a .keras file, got '{p.suffix or p.name}'")
    quiet_tensorflow()
    import keras

    try:
        with warnings.catch_warnings():  # e.g. "Skipping variable loading for optimizer"
            warnings.simplefilter("ignore")
            return keras.models.load_model(p, compile=True)
    except Exception as exc:
        if "`Lambda` layer" in str(exc):
            raise TinyDeployError("model_rejected", path=p,
                                  problem="it has a Lambda layer (Python code that Keras "
                                          "refuses to load in safe mode)",
                                  fix="replace the Lambda layer with built-in Keras layers"
                                  ) from exc
        problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TinyDeployError("bad_model_file", path=p, problem=problem[:200]) from exc


def input_shape_of(model: Any, path: str | Path) -> tuple[int, ...]:
    """The sample shape (no batch axis) of a single-input, single-output model with a
    fully static input; one ``model_rejected`` error otherwise."""
    inputs = getattr(model, "inputs", None) or []
    outputs = getattr(model, "outputs", None) or []
    if len(inputs) != 1 or len(outputs) != 1:
        raise TinyDeployError("model_rejected", path=path,
                              problem=f"the model has {len(inputs)} inputs and "
                                      f"{len(outputs)} outputs",
                              fix="tinydeploy supports functional/Sequential models with one "
                                  "keras.Input and one output")
    shape = tuple(inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise TinyDeployError("model_rejected", path=path,
                              problem=f"input shape {tuple(inputs[0].shape)} has unknown "
                                      "dimensions",
                              fix="give keras.Input a fixed shape (microcontrollers need "
                                  "static shapes)")
    return tuple(int(d) for d in shape)
