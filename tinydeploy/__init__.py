"""tinydeploy: Keras -> full-int8 TFLite -> microcontroller firmware, validated on device.

The Python API mirrors the CLI, one function per stage::

    import tinydeploy as td
    td.train("sine", "out/sine")
    td.quantize("out/sine/model.keras", "out/sine/data.npz", "out/sine")
    facts = td.check("out/sine/model_int8.tflite")
    td.generate(facts, "out/sine/fw", boards=["nano33ble"])

Stage modules import TensorFlow only inside the functions that need it, so importing
tinydeploy stays quick. The functions are bound here explicitly: a stage module shares its
function's name, and binding after the import keeps ``tinydeploy.train`` the function.
"""

from __future__ import annotations

from ._version import __version__
from .arena import arena
from .boards import BOARDS
from .carray import carray
from .data import Dataset, load_data
from .deploy import deploy
from .errors import TinyDeployError
from .facts import ModelFacts, load
from .flash import flash
from .guard import check
from .quantize import quantize
from .render import generate
from .train import train
from .validate import validate

inspect = load

__all__ = [
    "BOARDS", "Dataset", "ModelFacts", "TinyDeployError", "__version__", "arena", "carray",
    "check", "deploy", "flash", "generate", "inspect", "load", "load_data", "quantize",
    "train", "validate",
]
