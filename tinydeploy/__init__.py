"""tinydeploy: Keras -> full-int8 TFLite -> microcontroller firmware, validated on device.

The Python API mirrors the CLI, one function per stage::

    import tinydeploy as td
    td.train("sine", "out/sine")
    td.quantize("out/sine/model.keras", "out/sine/data.npz", "out/sine")
    facts = td.check("out/sine/model_int8.tflite")
    td.generate(facts, "out/sine/fw", boards=["nano33ble"])

Stage modules (``training``, ``quantization``, ``guard``, ``facts``, ``c_array``,
``arena_search``, ``boards``, ``render``, ``cruntime``, ``flashing``, ``validation``,
``pipeline``) import TensorFlow only inside the functions that need it, so importing
tinydeploy stays quick.
"""

from __future__ import annotations

from ._version import __version__
from .arena_search import arena
from .boards import BOARDS
from .c_array import carray
from .data import Dataset, load_data
from .errors import TinyDeployError
from .facts import ModelFacts, load
from .flashing import flash
from .guard import check
from .pipeline import deploy
from .quantization import quantize
from .render import generate
from .training import train
from .validation import validate

inspect = load

__all__ = [
    "BOARDS", "Dataset", "ModelFacts", "TinyDeployError", "__version__", "arena", "carray",
    "check", "deploy", "flash", "generate", "inspect", "load", "load_data", "quantize",
    "train", "validate",
]
