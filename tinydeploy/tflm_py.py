"""The ``tflite-micro`` Python package: is it usable here, and the ``.tflite`` schema.

``tflite-micro`` publishes wheels only for manylinux x86-64, so on macOS, Windows and
Linux aarch64 it is missing. Everything that only *reads* models takes the flatbuffer
schema from it when it is there, else from the one TensorFlow ships (the same generated
object API; only fields newer than TensorFlow's differ, none of which tinydeploy reads).
The host reference then falls back (``hostref.reference_model``).

``TINYDEPLOY_HIDE_TFLITE_MICRO=1`` makes tinydeploy behave exactly as where no wheel
exists (``import tflite_micro`` fails in the process that imports tinydeploy): tests and
CI prove the fallback with it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from .errors import TinyDeployError

HIDE_ENV = "TINYDEPLOY_HIDE_TFLITE_MICRO"
TESTED_TFLM = "0.dev20261023182759"  # the pip tflite-micro build pinned in pyproject.toml
MISSING_TOOL = "the tflite-micro Python runtime (TFLM reference kernels)"
MISSING_FIX = ("pip install 'tflite-micro==" + TESTED_TFLM + "' where a wheel exists (Linux "
               "x86-64); elsewhere tinydeploy uses a stand-in reference (see the README)")


def hidden() -> bool:
    """Is ``tflite_micro`` hidden by ``$TINYDEPLOY_HIDE_TFLITE_MICRO`` (any value but 0)?"""
    return os.environ.get(HIDE_ENV, "").strip() not in ("", "0")


def hide_if_asked() -> None:
    """Make ``import tflite_micro`` fail in this process when ``hidden()``."""
    if hidden():
        for name in [m for m in sys.modules if m == "tflite_micro"
                     or m.startswith("tflite_micro.")]:
            del sys.modules[name]
        sys.modules["tflite_micro"] = None  # type: ignore[assignment]


def available() -> bool:
    """Can the tflite-micro Python runtime (the TFLM reference kernels) be imported?"""
    if hidden() or sys.modules.get("tflite_micro", False) is None:
        return False
    try:
        return importlib.util.find_spec("tflite_micro") is not None
    except (ImportError, ValueError):
        return False


def _tensorflow_schema() -> ModuleType:
    """TensorFlow's ``schema_py_generated``, loaded from its file without importing the
    whole of TensorFlow (seconds)."""
    spec = importlib.util.find_spec("tensorflow")
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        path = Path(root) / "lite" / "python" / "schema_py_generated.py"
        if path.is_file():
            name = "tinydeploy._tflite_schema"
            file_spec = importlib.util.spec_from_file_location(name, path)
            assert file_spec is not None and file_spec.loader is not None
            module = importlib.util.module_from_spec(file_spec)
            sys.modules[name] = module
            file_spec.loader.exec_module(module)
            return module
    raise TinyDeployError("tool_missing", tool="the .tflite flatbuffer schema (from the "
                                               "tflite-micro or tensorflow package)",
                          fix="pip install tinydeploy's dependencies (pip install -e .)")


def _load_schema() -> ModuleType:
    if available():
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated

        return schema_py_generated
    return _tensorflow_schema()


def __getattr__(name: str) -> ModuleType:
    """``schema``: loaded on first use (``import tinydeploy`` stays fast)."""
    if name != "schema":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _load_schema()
    globals()["schema"] = module
    return module

__all__ = ["HIDE_ENV", "available", "hidden", "hide_if_asked"]  # and schema (lazy)
