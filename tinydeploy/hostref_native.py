"""Stand-in host references for where the tflite-micro Python runtime is missing.

``reference_model(facts, tflm_src)`` is the host reference every stage uses: the TFLM
Python runtime (``hostref.HostModel``) when ``tflite_micro`` imports, else

1. the C runtime compiled for this machine (the ``native`` board's code, run through the
   stdin/stdout harness): bit-exact with TFLM's reference kernels for every model it
   accepts (tests/test_cruntime_reference.py proves it where tflite-micro exists);
2. for a model the C runtime refuses, the generated TFLM firmware built for this machine
   (``native`` board, its serial protocol on a pseudo-terminal) from the TFLM tree given
   with ``--tflm-src`` / ``$TINYDEPLOY_TFLM_SRC``;
3. else one ``tool_missing`` error naming both ways out.

Each reference names itself (``label`` for the text report, ``describe()`` for the JSON's
``host_reference``), so a report always says what the device was compared with.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import tflm_py
from .errors import TinyDeployError
from .facts import ModelFacts
from .hostref import MISSING_FIX, MISSING_TOOL, HostModel, Predictor, arena_for, has_state
from .log import log

C_KIND = "c-runtime"
FIRMWARE_KIND = "tflm-firmware"
REFUSED = ("unsupported_op", "model_rejected")  # the C runtime's "not this model" codes


def split_outputs(blob: bytes, facts: ModelFacts) -> list[np.ndarray]:
    """One sample's output bytes (every output tensor in model order) -> one array each."""
    outs, off = [], 0
    for t in facts.outputs:
        outs.append(np.frombuffer(blob, dtype=t.numpy_dtype, count=t.elements,
                                  offset=off).reshape(t.sample_shape))
        off += t.nbytes
    return outs


class _StandIn(Predictor):
    """Common part of the stand-ins: the whole batch in one go (``predict_all``); ``run``
    replays the samples since the last reset (a stateful model keeps its state across
    ``run`` calls, as in the TFLM runtime)."""

    kind = ""
    label = ""  # the reference as the text report names it
    kernels = ""

    def __init__(self, facts: ModelFacts) -> None:
        self.facts = facts
        self.arena_size = arena_for(facts)  # the arena the TFLM Python runtime would get
        self.stateful = has_state(facts)
        self._sequence: list[list[np.ndarray]] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="td-hostref-")
        self.workdir = Path(self._tmp.name)

    @property
    def arena_used(self) -> int:
        """About the arena bytes TFLM reports in use on this host: the replay of its
        allocator for 64-bit hosts (native x86-64 TFLM's figure, tests/test_arena.py; the
        Python runtime adds ~300 B of its own); 0 when the replay does not know the model."""
        from .arena.graph import Graph
        from .arena.replay import HOST64_NATIVE, simulate

        try:
            return int(simulate(Graph.from_facts(self.facts), self.arena_size,
                                HOST64_NATIVE)["used"])
        except Exception:  # an operator or layout the replay does not model
            return 0

    def reset(self) -> None:
        """Back to the initial model state."""
        self._sequence = []

    def run(self, q_in: Sequence[np.ndarray], reset: bool = True) -> list[np.ndarray]:
        """One sample (one array per input) -> one array per output."""
        if len(q_in) != len(self.facts.inputs):
            raise ValueError(f"{len(q_in)} inputs given, the model has "
                             f"{len(self.facts.inputs)}")
        sample = [np.asarray(x, dtype=t.numpy_dtype).reshape(t.sample_shape)
                  for x, t in zip(q_in, self.facts.inputs, strict=True)]
        if reset or not self.stateful:
            self._sequence = []
        self._sequence.append(sample)
        seq = [np.stack([s[k] for s in self._sequence]) for k in range(len(sample))]
        return [y[-1] for y in self.predict_all(seq, stateful=True)]

    def close(self) -> None:
        """Remove the build folder."""
        self._tmp.cleanup()

    def describe(self) -> dict[str, Any]:
        """The reference for the JSON report's ``host_reference``."""
        from .hostref import TESTED_TFLM

        return {"kind": self.kind, "name": self.label, "package": None, "version": None,
                "tested": TESTED_TFLM, "tested_match": False,
                "kernels": self.kernels, "stand_in_for": "tflite-micro (not installed)"}


class CRuntimeReference(_StandIn):
    """The C runtime compiled for this machine (``TinyDeployError`` with a ``REFUSED`` code
    for a model it does not accept)."""

    kind = C_KIND
    label = "C runtime built for this host (stand-in: tflite-micro is not installed)"
    kernels = "tinydeploy C runtime, bit-exact with TFLM reference kernels for its models"

    def __init__(self, facts: ModelFacts) -> None:
        from .cruntime import generate_c
        from .cruntime.harness import build_harness

        super().__init__(facts)
        try:
            res = generate_c(facts, self.workdir / "model", tflm_arena=False)
            self.binary = build_harness(res.out_dir)
        except BaseException:
            self.close()
            raise

    def predict_all(self, q_inputs: Sequence[np.ndarray],
                    stateful: bool = False) -> list[np.ndarray]:
        from .cruntime.harness import run_harness_bytes

        n = len(q_inputs[0]) if len(q_inputs) else 0
        samples = [[np.asarray(x[i], dtype=t.numpy_dtype) for x, t in
                    zip(q_inputs, self.facts.inputs, strict=True)] for i in range(n)]
        outputs = [(t.sample_shape, t.numpy_dtype) for t in self.facts.outputs]
        try:
            rows = run_harness_bytes(self.binary, samples, outputs, reset=not stateful)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            raise TinyDeployError("build_failed", what="the host reference (C runtime)",
                                  rc="?", tail=str(exc)[:200],
                                  fix="report this model to tinydeploy") from None
        return [np.stack([r[k] for r in rows]) if rows else
                np.zeros((0, *t.sample_shape), t.numpy_dtype)
                for k, t in enumerate(self.facts.outputs)]


class FirmwareReference(_StandIn):
    """The generated TFLM firmware built for the ``native`` board from a TFLM tree, served
    on a pseudo-terminal; each ``predict_all`` starts it, runs the samples, stops it."""

    kind = FIRMWARE_KIND
    kernels = "the TFLM tree's kernels (generated TFLM firmware, native build)"

    def __init__(self, facts: ModelFacts, tree: Any) -> None:
        super().__init__(facts)
        self.tree = tree
        self.label = (f"TFLM firmware built for this host from {tree.root} (stand-in: "
                      "tflite-micro is not installed)")

    def predict_all(self, q_inputs: Sequence[np.ndarray],
                    stateful: bool = False) -> list[np.ndarray]:
        from .device.hello import check_device
        from .device.link import Link
        from .device.native import start_native

        n = len(q_inputs[0]) if len(q_inputs) else 0
        out = [np.zeros((n, *t.sample_shape), t.numpy_dtype) for t in self.facts.outputs]
        with start_native(self.facts, self.workdir, tflm=self.tree) as proc, \
                Link(proc.port) as link:
            check_device(link.hello(), self.facts, proc.port)
            for i in range(n):
                reply = link.infer(b"".join(np.ascontiguousarray(
                    x[i], dtype=t.numpy_dtype).tobytes() for x, t in
                    zip(q_inputs, self.facts.inputs, strict=True)),
                    reset=not stateful or i == 0)
                for k, y in enumerate(split_outputs(bytes(reply.output), self.facts)):
                    out[k][i] = y
        return out


def _tree(tflm_src: Any) -> Any:
    """The TFLM tree given (argument or ``$TINYDEPLOY_TFLM_SRC``), else None."""
    import os

    from .device.tflm_tree import ENV_SRC, TflmTree, find_tflm_tree

    if isinstance(tflm_src, TflmTree):
        return tflm_src
    if (tflm_src is None or not str(tflm_src).strip()) and not os.environ.get(ENV_SRC):
        return None
    return find_tflm_tree(tflm_src)


def reference_model(facts: ModelFacts, tflm_src: Any = None,
                    arena_size: int | None = None) -> HostModel | _StandIn:
    """The host reference for ``facts``: the TFLM Python runtime, else a stand-in (see the
    module doc). ``tflm_src``: a TFLM tree (path or ``TflmTree``; default
    ``$TINYDEPLOY_TFLM_SRC``) for models the C runtime refuses.

    Raises:
        TinyDeployError: ``tool_missing`` when no reference can run the model.
    """
    if tflm_py.available():
        return HostModel(facts, arena_size)
    try:
        ref: _StandIn = CRuntimeReference(facts)
    except TinyDeployError as exc:
        if exc.code not in REFUSED:
            raise
        tree = _tree(tflm_src)
        if tree is None:
            raise TinyDeployError(
                "tool_missing", tool=f"{MISSING_TOOL}, and the C runtime stand-in refuses "
                                     f"{Path(str(facts.path)).name} ({exc.message})",
                fix="pass --tflm-src DIR (or set $TINYDEPLOY_TFLM_SRC) to use the TFLM "
                    "firmware built for this machine as the reference, or "
                    + MISSING_FIX.split(";")[0]) from None
        ref = FirmwareReference(facts, tree)
    log.info("host reference: %s", ref.label)
    return ref


__all__ = ["CRuntimeReference", "FirmwareReference", "reference_model", "split_outputs"]
