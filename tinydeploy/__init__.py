"""tinydeploy: Keras -> full-int8 TFLite -> microcontroller firmware, validated on device.

The Python API mirrors the CLI, one function per stage::

    import tinydeploy as td
    td.train("sine", "out/sine")
    td.quantize("out/sine/model.keras", "out/sine/data.npz", "out/sine")
    facts = td.check("out/sine/model_int8.tflite")
    td.generate(facts, "out/sine/fw", boards=["nano33ble"])

Stage modules (``training``, ``quantization``, ``guard``, ``facts``, ``c_array``,
``arena``, ``boards``, ``render``, ``cruntime``, ``flashing``, ``validation``,
``pipeline``, ``layers``) load on first use, and import TensorFlow only inside the
functions that need it, so importing tinydeploy (and quick commands such as ``carray``)
stays fast. No module shares a name with an API function, so ``tinydeploy.train`` is
always the function -- except the ``arena`` package, which is itself callable as
``tinydeploy.arena(...)``. ``dir(tinydeploy)`` lists the whole API.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__
from .errors import TinyDeployError
from .tflm_py import hide_if_asked

hide_if_asked()  # $TINYDEPLOY_HIDE_TFLITE_MICRO: behave as where no tflite-micro wheel exists

_API = {  # API name -> (module, attribute)
    "train": ("training", "train"), "quantize": ("quantization", "quantize"),
    "check": ("guard", "check"), "inspect": ("facts", "load"), "load": ("facts", "load"),
    "ModelFacts": ("facts", "ModelFacts"), "carray": ("c_array", "carray"),
    "arena": ("arena", ""), "BOARDS": ("boards", "BOARDS"),
    "generate": ("render", "generate"), "flash": ("device.flashing", "flash"),
    "build": ("device.building", "build"),
    "validate": ("validation", "validate"), "deploy": ("pipeline", "deploy"),
    "load_data": ("data", "load_data"), "Dataset": ("data", "Dataset"),
    "analyze": ("layers", "analyze"), "strip_float_io": ("interface", "strip_float_io"),
}
__all__ = ["TinyDeployError", "__version__", *_API]


def __dir__() -> list[str]:
    """The API names (lazily loaded) plus the module's own, for dir() and tab completion."""
    return sorted(set(globals()) | set(__all__))


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'tinydeploy' has no attribute {name!r}")
    module, attr = _API[name]
    value = importlib.import_module(f".{module}", __name__)
    if attr:  # "" : the module itself is the API (the callable ``arena`` package)
        value = getattr(value, attr)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value
