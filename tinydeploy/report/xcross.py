"""Device vs the float model (ST Edge AI's "X-cross"): how far the device's outputs, and
the host's int8 outputs, are from the float ``.tflite`` the int8 model was quantized from.

The float model is found beside the int8 model (``model_float.tflite``, what ``quantize``
writes) or given; it runs in the host's TFLM runtime on the float test data. When the
device's error equals the host int8 error, the device adds nothing to quantization's.
A float model that cannot run or does not fit the int8 model's interface is skipped
(logged at debug level): the comparison is extra information, never a failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..facts import ModelFacts, TensorFacts
from ..log import log
from .facts import error_stats

FLOAT_NAME = "model_float.tflite"  # quantization.FLOAT_NAME


def float_model_for(facts: ModelFacts) -> Path | None:
    """The float ``.tflite`` beside the int8 model file, if there is one."""
    if not facts.path or str(facts.path).startswith("<"):
        return None
    here = Path(facts.path)
    found = here.with_name(FLOAT_NAME)
    return found if found.is_file() and found.resolve() != here.resolve() else None


def cross(facts: ModelFacts, xs: Sequence[np.ndarray], host: np.ndarray, device: np.ndarray,
          out: TensorFacts, regression: bool, float_model: Path | None = None,
          stateful: bool = False) -> dict[str, Any]:
    """Error statistics of device and host (dequantized first output) vs the float model.

    Args:
        facts: the int8 model.
        xs: the float test inputs (one array per model input, samples first).
        host, device: the first output's values as received (quantized).
        out: the first output's facts.
        regression: also compute the NSE.
        float_model: the float ``.tflite`` (default: :func:`float_model_for`).
        stateful: the samples are one sequence.

    Returns:
        ``{"model", "device": stats, "host": stats}`` or ``{}`` (no usable float model).
    """
    from ..facts import load
    from ..hostref import HostModel
    from ..verdict import values

    path = float_model if float_model is not None else float_model_for(facts)
    if path is None or not all(np.issubdtype(np.asarray(x).dtype, np.floating) for x in xs):
        return {}
    try:
        ffacts = load(path)
        if (len(ffacts.inputs) != len(xs) or len(ffacts.outputs) != len(facts.outputs)
                or ffacts.outputs[0].elements != out.elements):
            log.debug("float model %s does not match the int8 model's interface", path)
            return {}
        ref = HostModel(ffacts).predict_all(
            [np.asarray(x, np.float32).reshape(len(x), *t.sample_shape)
             for x, t in zip(xs, ffacts.inputs, strict=True)], stateful=stateful)[0]
    except Exception as exc:  # extra information only: never fail a validation on it
        log.debug("float model %s skipped: %s", path, exc)
        return {}
    n = len(ref)
    ref = np.asarray(ref, np.float64).reshape(n, -1)
    dev = values(device, out).reshape(n, -1)
    hst = values(host, out).reshape(n, -1)
    return {"model": str(Path(path).resolve()),
            "device": error_stats(ref, dev, regression),
            "host": error_stats(ref, hst, regression)}
