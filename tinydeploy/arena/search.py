"""Arena stage: the smallest TFLM tensor arena a model needs (``tinydeploy arena``).

Layer 6 of :mod:`tinydeploy.arena` (choice): the public :func:`arena` call.

Two targets:

* ``host64`` -- *measured*: the smallest ``arena_size`` for which the TFLM Python runtime
  (64-bit host) both allocates and invokes the model (:mod:`.host`).

* ``cortex-m`` (default) -- *predicted* for a 32-bit Cortex-M: :mod:`.replay`
  replays TFLM's allocation sequence with the struct sizes of arm-none-eabi-g++ (4-byte
  pointers, short enums) and the kernels' facts of :mod:`.library` for a
  kernel *flavour*: ``reference`` (TFLM 90b983c2) or ``cmsis-nn`` (Chirale_TensorFlowLite
  2.0.0, :mod:`.cmsis_nn`). For the reference flavour the planned head is
  cross-checked with one 1 MiB run of the host runtime (``RecordingMicroAllocator``
  "head"); if the runtime reports more (a kernel with scratch buffers the tables do not
  know), its figure wins and one unknown scratch request per node is assumed for the
  planning-phase need. The prediction is the smallest size from which 64 consecutive
  sizes all fit.

* ``qemu-cm4`` -- *measured* on the emulated Cortex-M4 with the user's TFLM tree
  (:mod:`.measure`); the tree's kernels set the flavour.

Checked against native TFLM ground truth in ``tests/data``: the replay with 8-byte
pointers reproduces x86-64 ``arena_used_bytes`` exactly and ``min_arena`` to within
16 bytes; with 32-bit struct sizes it reproduces the Cortex-M4 ``arena_used_bytes`` and
``min_arena_cm4`` exactly on all 18 models (tests/test_arena_zoo.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import tflm_py
from ..errors import TinyDeployError, check_choice
from ..facts import ModelFacts, load
from ..log import log, stage
from .graph import Graph
from .host import HostRuntime, parse_allocations, search_host64
from .library import FLAVOURS, KNOWN_OPS, REFERENCE
from .margin import with_margin
from .measure import measure_arena
from .predict import predict_with_head

TARGETS = ("cortex-m", "host64", "qemu-cm4")


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (_drop_none(v) if isinstance(v, dict) else v) for k, v in d.items()
            if v is not None}


@dataclass
class ArenaResult:
    arena_bytes: int
    target: str
    breakdown: dict[str, int]
    model: str = ""
    cortex_m_bytes: int | None = None  # predicted 32-bit minimum (always computed)
    host64_bytes: int | None = None  # measured minimum (target host64 only)
    host64_used_bytes: int | None = None  # arena_used (head + tail) at 1 MiB, host64
    arena_used_bytes: int | None = None  # arena_used_bytes() on the target (1 MiB arena)
    host64_breakdown: dict[str, int] = field(default_factory=dict)
    approximate_ops: list[str] = field(default_factory=list)
    flavour: str = REFERENCE  # kernels of the prediction / of the measured library
    measured: dict[str, Any] = field(default_factory=dict)  # qemu-cm4: MeasuredArena
    trials: int = 0
    crashes: int = 0
    seconds: float = 0.0

    @property
    def generate_bytes(self) -> int | None:
        """The arena ``generate --arena auto`` uses for a board of this kernel flavour: the
        Cortex-M prediction plus its margin (:mod:`.margin`)."""
        if self.cortex_m_bytes is None:
            return None
        return with_margin(self.cortex_m_bytes, self.flavour)

    def to_dict(self) -> dict[str, Any]:
        """JSON view: every figure named by what it is (no nulls).

        ``arena_bytes`` is the answer for ``target``; ``generate_bytes`` the size
        ``generate --arena auto`` writes into the firmware; ``cortex_m`` holds the 32-bit
        prediction (minimum and ``arena_used_bytes`` at that size); ``host64`` the 64-bit
        host runtime's figures (``used_bytes`` at a 1 MiB arena, and ``min_bytes``
        only when measured with ``--target host64``).
        """
        d: dict[str, Any] = {
            "model": self.model, "target": self.target, "arena_bytes": self.arena_bytes,
            "kind": "predicted" if self.target == "cortex-m" else "measured",
            "flavour": self.flavour,
            "generate_bytes": self.generate_bytes, "breakdown": dict(self.breakdown),
            "cortex_m": {"predicted_min_bytes": self.cortex_m_bytes},
            "host64": {"used_bytes": self.host64_used_bytes,
                       "breakdown": dict(self.host64_breakdown)},
            "approximate_ops": list(self.approximate_ops), "trials": self.trials,
            "crashes": self.crashes, "seconds": self.seconds}
        if self.target != "host64" and self.arena_used_bytes is not None:
            d["cortex_m"]["used_bytes"] = self.arena_used_bytes
        if self.host64_bytes is not None:
            d["host64"]["min_bytes"] = self.host64_bytes
        if self.measured:
            d["measured"] = dict(self.measured)
        return _drop_none(d)

    def summary(self) -> str:
        how = {"host64": " (measured)",
               "qemu-cm4": f" (measured, {self.measured.get('tree', '?')}, {self.flavour} "
                           "kernels)"}.get(self.target, f" (predicted, 32-bit, {self.flavour} "
                                                        "kernels)")
        lines = [f"{self.model}: tensor arena for {self.target} = {self.arena_bytes} bytes" + how]
        for k, v in self.breakdown.items():
            lines.append(f"  {k:42s} {v:8d}")
        if self.target == "host64" and self.cortex_m_bytes is not None:
            lines.append(f"  (cortex-m predicted minimum: {self.cortex_m_bytes} bytes)")
        if self.generate_bytes is not None:
            lines.append(f"  generate --arena auto uses {self.generate_bytes} bytes "
                         "(Cortex-M prediction + margin)")
        if self.approximate_ops:
            lines.append("  estimated (no kernel layout known): "
                         + ", ".join(self.approximate_ops))
        return "\n".join(lines)


def arena(model: str | Path | bytes | ModelFacts, target: str = "cortex-m",
          flavour: str = REFERENCE, tflm_src: str | Path | None = None,
          timeout: float | None = None) -> ArenaResult:
    """Smallest tensor arena for ``target`` (see the module docstring).

    Args:
        model: int8 ``.tflite`` path, bytes or :class:`ModelFacts`.
        target: ``cortex-m`` (predicted for 32-bit, about a second), ``host64`` (measured
            in the TFLM Python runtime, one child process per trial) or ``qemu-cm4``
            (measured on the emulated Cortex-M4 with the TFLM tree ``tflm_src``, each
            trial a fresh boot; :mod:`.measure`).
        flavour: kernels of the cortex-m prediction: ``reference`` or ``cmsis-nn``.
        tflm_src: TFLM tree for ``qemu-cm4`` (default ``$TINYDEPLOY_TFLM_SRC``); its
            kernels set the flavour.
        timeout: ``qemu-cm4``: seconds one trial's inference may take (default: predicted
            from the model, :mod:`tinydeploy.device.timing`).

    Returns:
        An :class:`ArenaResult` (``arena_bytes``, ``generate_bytes``, breakdown).

    Raises:
        TinyDeployError: unknown target or flavour (``bad_argument``), unreadable model,
            no size lets the model run (``arena_not_found``), no tree for qemu-cm4
            (``tool_missing``).
    """
    check_choice(target, TARGETS, "arena target")
    check_choice(flavour, FLAVOURS, "kernel flavour")
    if timeout is not None and (target != "qemu-cm4" or not timeout > 0):
        raise TinyDeployError("bad_argument",
                              problem="--timeout is the seconds one qemu-cm4 trial may take",
                              fix="pass a positive --timeout with --target qemu-cm4, or omit it")
    t0 = time.perf_counter()
    facts = load(model)
    name = Path(facts.path).name if facts.path else "<bytes>"
    stage("arena", f"{name}: {'predicting' if target == 'cortex-m' else 'measuring'} the "
                   f"smallest arena ({target})")
    if target == "qemu-cm4":
        m = measure_arena(facts, tflm_src, timeout=timeout)
        g = Graph.from_facts(facts, m.flavour)
        pred, bd = predict_with_head(g, None)
        breakdown = {k: v for k, v in bd.items() if k != "used"}
        breakdown["predicted minimum"] = pred
        return ArenaResult(
            arena_bytes=m.arena_bytes, target=target, model=name, breakdown=breakdown,
            cortex_m_bytes=pred, arena_used_bytes=m.arena_used_bytes, flavour=m.flavour,
            measured=m.to_dict(), approximate_ops=_approximate(g), trials=m.trials,
            crashes=sum(v for k, v in m.failures.items() if k in ("crash", "hang")),
            seconds=round(time.perf_counter() - t0, 3))
    g = Graph.from_facts(facts, flavour)
    measured: dict[str, int] = {}
    host64 = None
    trials = crashes = 0
    if target == "host64" or (flavour == REFERENCE and tflm_py.available()):
        with HostRuntime(facts.data) as rt:
            measured = parse_allocations(rt.probe(name))
            if target == "host64":
                host64 = search_host64(rt, measured.get("total", 1024), name=name)
            trials = len(rt.trials)
            crashes = sum(1 for v in rt.trials.values() if v == "crash")
    pred, bd = predict_with_head(g, measured.get("head"))
    breakdown = {k: v for k, v in bd.items() if k != "used"}
    result = ArenaResult(
        arena_bytes=host64 if host64 is not None else pred,
        target=target, model=name,
        breakdown=measured if target == "host64" else breakdown,
        cortex_m_bytes=pred, host64_bytes=host64, host64_used_bytes=measured.get("total"),
        arena_used_bytes=measured.get("total") if target == "host64" else bd["used"],
        host64_breakdown=measured, flavour=flavour,
        approximate_ops=_approximate(g), trials=trials, crashes=crashes,
        seconds=round(time.perf_counter() - t0, 3))
    if target != "host64":
        result.breakdown["predicted minimum"] = pred
    return result


def _approximate(g: Graph) -> list[str]:
    return sorted({op.name for op in g.ops if op.name not in KNOWN_OPS})


def cortex_m_estimate(facts: ModelFacts) -> int | None:
    """TFLM's Cortex-M arena for ``facts`` (``arena(target="cortex-m")``), or None when it
    cannot be had: an estimate for comparison only (the C runtime's ``memory.json``), so
    it never fails the caller."""
    try:
        return int(arena(facts, target="cortex-m").arena_bytes)
    except Exception as exc:  # an estimate only: never fail generation over it
        log.debug("TFLM arena estimate unavailable: %s", exc)
        return None


__all__ = ["TARGETS", "ArenaResult", "arena", "cortex_m_estimate"]
