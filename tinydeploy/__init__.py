"""tinydeploy: Keras -> full-int8 TFLite -> microcontroller firmware, validated on device.

The Python API mirrors the CLI, one function per stage::

    import tinydeploy as td
    td.train("sine", "out/sine")
    td.quantize("out/sine/model.keras", "out/sine/data.npz", "out/sine")
    facts = td.check("out/sine/model_int8.tflite")
    td.generate(facts, "out/sine/fw", boards=["nano33ble"])

Stage modules load lazily so that importing tinydeploy does not import TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import TinyDeployError

__version__ = "0.1.0"

_API = {
    "train": "train", "quantize": "quantize", "check": "guard", "inspect": "facts",
    "load": "facts", "ModelFacts": "facts", "carray": "carray", "arena": "arena",
    "BOARDS": "boards", "generate": "render", "flash": "flash", "validate": "validate",
    "deploy": "deploy", "load_data": "data", "Dataset": "data",
}
__all__ = ["TinyDeployError", "__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        module = importlib.import_module(f".{_API[name]}", __name__)
        return getattr(module, "load" if name == "inspect" else name)
    raise AttributeError(f"module 'tinydeploy' has no attribute {name!r}")
