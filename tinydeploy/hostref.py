"""Host reference: run an int8 model in the TFLM Python runtime (bit-exact with TFLM's
reference kernels on a device), and the input/output (de)quantization the firmware uses.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

import numpy as np

from .facts import ModelFacts, TensorFacts

DEFAULT_ARENA = 1 << 20


def quantize_input(x: np.ndarray, t: TensorFacts) -> np.ndarray:
    """q = clip(round(x / S) + Z) -- the same arithmetic the tool uses everywhere."""
    if t.dtype != "INT8" or t.scale is None:
        return np.asarray(x, dtype=t.numpy_dtype)
    q = np.round(np.asarray(x, dtype=np.float32) / np.float32(t.scale)) + t.zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, t: TensorFacts) -> np.ndarray:
    if t.scale is None:
        return np.asarray(q, dtype=np.float32)
    return ((np.asarray(q, dtype=np.float32) - t.zero_point) * np.float32(t.scale)).astype(
        np.float32)


class HostModel:
    """A TFLM Python interpreter for one model; ``predict`` takes quantized inputs."""

    def __init__(self, facts: ModelFacts, arena_size: int = DEFAULT_ARENA) -> None:
        from tflite_micro.python.tflite_micro import runtime

        self.facts = facts
        self.interpreter = runtime.Interpreter.from_bytes(facts.data, arena_size=arena_size)

    def predict_one(self, q_in: np.ndarray) -> np.ndarray:
        t = self.facts.inputs[0]
        self.interpreter.set_input(np.asarray(q_in, dtype=t.numpy_dtype).reshape(t.shape), 0)
        self.interpreter.invoke()
        return np.array(self.interpreter.get_output(0)).reshape(self.facts.outputs[0].shape[1:])

    def predict(self, q_inputs: np.ndarray) -> np.ndarray:
        """Run each sample (batch axis first) and stack the outputs (batch axis first)."""
        return np.stack([self.predict_one(x) for x in q_inputs])

    def allocations(self) -> str:
        """The RecordingMicroAllocator breakdown (printed by TFLM to C-level stderr)."""
        return capture_fd2(self.interpreter.print_allocations)


def capture_fd2(fn: object) -> str:
    """Call ``fn()`` and return what it wrote to file descriptor 2."""
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        try:
            with contextlib.suppress(Exception):
                import sys

                sys.stderr.flush()
            os.dup2(tmp.fileno(), 2)
            fn()  # type: ignore[operator]
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        return tmp.read().decode(errors="replace")
