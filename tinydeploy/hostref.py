"""Host reference: run a quantized model in the TFLM Python runtime (bit-exact with TFLM's
reference kernels on a device), and the input/output (de)quantization the firmware uses.

Every sample starts from a fresh model state (``Interpreter.reset()``, as the firmware does
on an INFER with the reset flag) unless a stateful run is asked for, where the samples are
one sequence. Models may have several inputs/outputs (int8, int16, int32 tensors).

The arena follows the model (``arena_for``: twice every non-constant tensor's bytes plus
bookkeeping, at least 1 MiB); a model the runtime still cannot allocate gets the smallest
working size measured in a child process (some sizes crash the runtime), else one
``model_rejected`` error. The reference is the pip ``tflite-micro`` build tinydeploy was
tested with (``TESTED_TFLM``, pinned in pyproject.toml); ``reference()`` names the
installed one and ``warn_untested()`` logs a warning when it differs. Where tflite-micro
is missing (no wheel: macOS, Windows, Linux aarch64) ``hostref_native.reference_model``
gives a stand-in (the C runtime or the TFLM firmware compiled for this machine).
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import TinyDeployError
from .facts import ModelFacts, TensorFacts
from .log import log
from .tflm_py import MISSING_FIX, MISSING_TOOL, TESTED_TFLM

DEFAULT_ARENA = 1 << 20
TESTED_TENSORFLOW = "2.21"  # the converter series pinned in pyproject.toml (>=2.21,<2.22)
MAX_ARENA = 1 << 28  # 256 MiB: no microcontroller model needs more
_DTYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8, 16: 4, 17: 1}


def tflm_version() -> str:
    """The installed pip ``tflite-micro`` version (``unknown`` if it has no metadata,
    ``not installed`` when it is missing or hidden)."""
    import importlib.metadata

    from . import tflm_py

    if not tflm_py.available():
        return "not installed"
    try:
        return importlib.metadata.version("tflite-micro")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def reference() -> dict[str, Any]:
    """The host reference of a report: package, installed and tested version."""
    version = tflm_version()
    return {"kind": "tflite-micro", "name": f"tflite-micro {version}",
            "package": "tflite-micro", "version": version, "tested": TESTED_TFLM,
            "tested_match": version == TESTED_TFLM,
            "kernels": "TFLM reference kernels (TFLM Python runtime)"}


def warn_untested() -> bool:
    """Log a warning when the installed tflite-micro is not the tested build; -> matches."""
    version = tflm_version()
    if version == TESTED_TFLM:
        return True
    if version == "not installed":
        log.info("host reference: tflite-micro is not installed; a stand-in is used")
        return False
    log.warning("host reference: tflite-micro %s is installed but tinydeploy was tested "
                "with %s; known TFLM differences (docs/tflm-differences.md) are not applied "
                "and a correct device may differ -- pip install 'tflite-micro==%s'",
                version, TESTED_TFLM, TESTED_TFLM)
    return False


@functools.cache
def warn_untested_tensorflow(version: str) -> bool:
    """Log a warning (once per version) when the installed TensorFlow, whose converter
    writes the int8 model, is not of the tested series; -> matches."""
    if version == TESTED_TENSORFLOW or version.startswith(TESTED_TENSORFLOW + "."):
        return True
    log.warning("quantize: tensorflow %s is installed but tinydeploy was tested with %s.x; "
                "its converter may quantize differently -- pip install "
                "'tensorflow>=%s,<2.%d'", version, TESTED_TENSORFLOW, TESTED_TENSORFLOW,
                int(TESTED_TENSORFLOW.split(".")[1]) + 1)
    return False


def arena_for(facts: ModelFacts) -> int:
    """An arena that holds the model in the TFLM Python runtime: twice the bytes of every
    non-constant tensor (all live at once, a bound of TFLM's plan and of the kernels'
    scratch buffers) + 512 B per tensor and 2 KiB per operator (bookkeeping) + 64 KiB,
    at least ``DEFAULT_ARENA``, 16-byte aligned."""
    model = facts.model
    if model is None:
        return DEFAULT_ARENA
    buffers = model.buffers or []
    total = 64 * 1024
    for sub in model.subgraphs or []:
        total += 2048 * len(sub.operators or [])
        for t in sub.tensors or []:
            buf = buffers[t.buffer] if 0 <= t.buffer < len(buffers) else None
            total += 512
            if buf is not None and buf.data is not None and len(buf.data):
                continue  # constant: read from the flatbuffer
            n = _DTYPE_BYTES.get(int(t.type), 4)
            for d in (t.shape if t.shape is not None else []):
                n *= max(int(d), 1)
            total += 2 * n
    return max(DEFAULT_ARENA, -(-total // 16) * 16)


QUANTIZED = ("INT8", "INT16")


def tflm_round(v: np.ndarray) -> np.ndarray:
    """TFLM's ``TfLiteRound`` of float32 values (``std::round``: half away from zero),
    as float64 (exact: |v| + 0.5 is exact in float64 for every float32 below 2^52)."""
    v = np.asarray(v, dtype=np.float32).astype(np.float64)
    return np.copysign(np.floor(np.abs(v) + 0.5), v)


def _unclipped(x: np.ndarray, t: TensorFacts) -> np.ndarray:
    return tflm_round(np.asarray(x, dtype=np.float32) / np.float32(t.scale)) + t.zero_point


def quantize_input(x: np.ndarray, t: TensorFacts) -> np.ndarray:
    """q = clip(round(x / S) + Z) -- exactly what TFLM's QUANTIZE computes for a float32
    input (the division in float32, ``round`` half away from zero), so float data
    quantized here equals what a stripped float interface (``--io int8``) would compute.

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


class Predictor:
    """What every host reference offers on top of ``run`` (one sample: one array per
    input -> one per output): single-input and batch forms. Subclasses set ``facts``."""

    facts: ModelFacts

    kind = ""  # what the reference is: tflite-micro, c-runtime, tflm-firmware

    def run(self, q_in: Sequence[np.ndarray], reset: bool = True) -> list[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        """Free what the reference holds (a build folder); nothing by default."""

    def predict_one(self, q_in: np.ndarray, reset: bool = True) -> np.ndarray:
        """One sample of a single-input model -> its first output (no batch axis)."""
        return self.run([q_in], reset)[0]

    def predict(self, q_inputs: np.ndarray, stateful: bool = False) -> np.ndarray:
        """Run each sample (batch axis first) and stack the first output (batch axis
        first). ``stateful``: the samples are one sequence (no state reset between them)."""
        return self.predict_all([q_inputs], stateful)[0]

    def predict_all(self, q_inputs: Sequence[np.ndarray],
                    stateful: bool = False) -> list[np.ndarray]:
        """Several inputs: one array per model input (batch axis first, same length) ->
        one array per output (batch axis first). ``stateful`` as in ``predict``."""
        n = len(q_inputs[0]) if len(q_inputs) else 0
        runs = [self.run([x[i] for x in q_inputs], reset=not stateful or i == 0)
                for i in range(n)]
        return [np.stack([r[k] for r in runs]) for k in range(len(self.facts.outputs))]


class HostModel(Predictor):
    """A TFLM Python interpreter for one model; ``predict`` takes quantized inputs.
    ``tool_missing`` where the tflite-micro Python runtime is not installed (use
    ``hostref_native.reference_model`` for a reference that falls back)."""

    kind = "tflite-micro"

    def __init__(self, facts: ModelFacts, arena_size: int | None = None) -> None:
        from . import tflm_py

        if not tflm_py.available():
            raise TinyDeployError("tool_missing", tool=MISSING_TOOL, fix=MISSING_FIX)
        from tflite_micro.python.tflite_micro import runtime

        self.facts = facts
        self.arena_size = arena_size or arena_for(facts)
        try:
            self.interpreter = runtime.Interpreter.from_bytes(facts.data,
                                                              arena_size=self.arena_size)
        except RuntimeError as exc:  # an arena too small, or a model TFLM cannot run
            self.arena_size = _measured_arena(facts, str(exc))
            self.interpreter = runtime.Interpreter.from_bytes(facts.data,
                                                              arena_size=self.arena_size)
        self.stateful = has_state(facts)  # else a reset is skipped (it changes nothing)

    @property
    def label(self) -> str:
        """The reference as the report names it."""
        return f"tflite-micro {tflm_version()}"

    def describe(self) -> dict[str, Any]:
        """The reference for the JSON report (``reference()``)."""
        return reference()

    def reset(self) -> None:
        """Back to the initial model state."""
        self.interpreter.reset()

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
        return [np.array(self.interpreter.get_output(k)).reshape(t.sample_shape)
                for k, t in enumerate(self.facts.outputs)]

    def predict(self, q_inputs: np.ndarray, stateful: bool = False) -> np.ndarray:
        """As ``Predictor.predict`` (one interpreter call per sample)."""
        return np.stack([self.predict_one(x, reset=not stateful or i == 0)
                         for i, x in enumerate(q_inputs)])

    def allocations(self) -> str:
        """The RecordingMicroAllocator breakdown (printed by TFLM to C-level stderr)."""
        return capture_fd2(self.interpreter.print_allocations)


def _measured_arena(facts: ModelFacts, problem: str) -> int:
    """A size with which the runtime allocates and invokes the model: ``arena_for``
    doubled until one works, each trial in a child process (a size that crashes the
    runtime ends only the child); ``model_rejected`` when none up to ``MAX_ARENA`` does."""
    from .arena.host import HostRuntime

    log.info("host reference: %s; trying larger arenas", problem)
    with HostRuntime(facts.data) as rt:
        n = 2 * arena_for(facts)
        while n <= MAX_ARENA:
            if rt.ok(n):
                return n
            n *= 2
    raise TinyDeployError(
        "model_rejected", path=facts.path,
        problem=f"the host reference (tflite-micro {tflm_version()}) cannot run it with any "
                f"arena up to {MAX_ARENA >> 20} MiB ({problem})",
        fix="check the model with `tinydeploy check`")


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
