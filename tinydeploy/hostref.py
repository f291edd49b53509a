"""Host reference: run a quantized model in the TFLM Python runtime (bit-exact with TFLM's
reference kernels on a device), and the input/output (de)quantization the firmware uses.

Every sample starts from a fresh model state (``Interpreter.reset()``, as the firmware does
on an INFER with the reset flag) unless a stateful run is asked for, where the samples are
one sequence. Models may have several inputs/outputs (int8, int16, int32 tensors).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence

import numpy as np

from .facts import ModelFacts, TensorFacts

DEFAULT_ARENA = 1 << 20


QUANTIZED = ("INT8", "INT16")


def _unclipped(x: np.ndarray, t: TensorFacts) -> np.ndarray:
    return np.round(np.asarray(x, dtype=np.float32) / np.float32(t.scale)) + t.zero_point


def quantize_input(x: np.ndarray, t: TensorFacts) -> np.ndarray:
    """q = clip(round(x / S) + Z) -- the same arithmetic the tool uses everywhere.

    An array that already has the tensor's integer dtype (int8, int16) is taken as is
    (already quantized); tensors without a scale (int32 indices, float) are only cast."""
    x = np.asarray(x)
    if x.dtype == np.dtype(t.numpy_dtype) or t.dtype not in QUANTIZED or not t.scale:
        return np.asarray(x, dtype=t.numpy_dtype)
    info = np.iinfo(t.numpy_dtype)
    return np.clip(_unclipped(x, t), info.min, info.max).astype(t.numpy_dtype)


def saturation(x: np.ndarray, t: TensorFacts) -> float:
    """Fraction of the values that ``quantize_input`` clips to the dtype's range (0 for
    data already quantized or tensors without a scale)."""
    x = np.asarray(x)
    if x.size == 0 or x.dtype == np.dtype(t.numpy_dtype) or t.dtype not in QUANTIZED \
            or not t.scale:
        return 0.0
    info = np.iinfo(t.numpy_dtype)
    q = _unclipped(x, t)
    return float(np.mean((q < info.min) | (q > info.max)))


def dequantize(q: np.ndarray, t: TensorFacts) -> np.ndarray:
    if t.scale is None:
        return np.asarray(q, dtype=np.float32)
    return ((np.asarray(q, dtype=np.float32) - t.zero_point) * np.float32(t.scale)).astype(
        np.float32)


STATE_OPS = ("VAR_HANDLE", "ASSIGN_VARIABLE", "READ_VARIABLE")


def has_state(facts: ModelFacts) -> bool:
    """Does the model keep state between invocations (variable tensors, e.g. LSTM state, or
    resource variables)? Only then does a reset change anything."""
    if any(op in STATE_OPS for op in facts.op_names):
        return True
    model = facts.model
    if model is None:
        return True  # cannot tell: reset to be safe
    return any(bool(t.isVariable) for sg in (model.subgraphs or []) for t in (sg.tensors or []))


class HostModel:
    """A TFLM Python interpreter for one model; ``predict`` takes quantized inputs."""

    def __init__(self, facts: ModelFacts, arena_size: int = DEFAULT_ARENA) -> None:
        from tflite_micro.python.tflite_micro import runtime

        self.facts = facts
        self.interpreter = runtime.Interpreter.from_bytes(facts.data, arena_size=arena_size)
        self.stateful = has_state(facts)  # else a reset is skipped (it changes nothing)

    def run(self, q_in: Sequence[np.ndarray], reset: bool = True) -> list[np.ndarray]:
        """One sample: one array per model input (no batch axis) -> one per output.
        ``reset`` starts from a fresh model state (else the state of the last run)."""
        if len(q_in) != len(self.facts.inputs):
            raise ValueError(f"{len(q_in)} inputs given, the model has "
                             f"{len(self.facts.inputs)}")
        if reset and self.stateful:
            self.interpreter.reset()
        for k, (x, t) in enumerate(zip(q_in, self.facts.inputs, strict=True)):
            self.interpreter.set_input(np.asarray(x, dtype=t.numpy_dtype).reshape(t.shape), k)
        self.interpreter.invoke()
        return [np.array(self.interpreter.get_output(k)).reshape(t.shape[1:])
                for k, t in enumerate(self.facts.outputs)]

    def predict_one(self, q_in: np.ndarray, reset: bool = True) -> np.ndarray:
        """One sample of a single-input model -> its first output (no batch axis)."""
        return self.run([q_in], reset)[0]

    def predict(self, q_inputs: np.ndarray, stateful: bool = False) -> np.ndarray:
        """Run each sample (batch axis first) and stack the outputs (batch axis first).
        ``stateful``: the samples are one sequence (no state reset between them)."""
        return np.stack([self.predict_one(x, reset=not stateful or i == 0)
                         for i, x in enumerate(q_inputs)])

    def predict_all(self, q_inputs: Sequence[np.ndarray],
                    stateful: bool = False) -> list[np.ndarray]:
        """Several inputs: one array per model input (batch axis first, same length) ->
        one array per output (batch axis first). ``stateful`` as in ``predict``."""
        n = len(q_inputs[0]) if len(q_inputs) else 0
        runs = [self.run([x[i] for x in q_inputs], reset=not stateful or i == 0)
                for i in range(n)]
        return [np.stack([r[k] for r in runs]) for k in range(len(self.facts.outputs))]

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
