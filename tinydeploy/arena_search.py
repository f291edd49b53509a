"""Arena stage: the smallest TFLM tensor arena a model needs.

Two targets:

* ``host64`` -- *measured*: the smallest ``arena_size`` for which the TFLM Python runtime
  (64-bit host, ``runtime.Interpreter.from_bytes``) both allocates and invokes the model
  (zero input). Some sizes just below the minimum segfault the runtime instead of
  raising, so no trial runs in this process: a worker child imports the runtime once and
  forks one grandchild per trial, whose exit status is the answer (a signal = crash =
  fail); if the worker itself dies it is restarted. Search: doubling up / halving down
  from the used-bytes figure, bisection on 16-byte steps, then a byte-exact scan of the
  64 bytes below the edge (the feasible set is not monotone: persistent allocations are
  aligned relative to the arena end), and finally ``min`` works and ``min - 1`` fails.

* ``cortex-m`` (default) -- *predicted* for a 32-bit Cortex-M: :mod:`tinydeploy.arena_model`
  replays TFLM's allocation sequence with the struct sizes of arm-none-eabi-g++ (4-byte
  pointers, short enums) and the kernels' facts of :mod:`tinydeploy.arena_kernels` for a
  kernel *flavour*: ``reference`` (TFLM 90b983c2) or ``cmsis-nn`` (Chirale_TensorFlowLite
  2.0.0, :mod:`tinydeploy.cmsis_nn_sizes`). For the reference flavour the planned head is
  cross-checked with one 1 MiB run of the host runtime (``RecordingMicroAllocator``
  "head"); if the runtime reports more (a kernel with scratch buffers the tables do not
  know), its figure wins and one unknown scratch request per node is assumed for the
  planning-phase need. The prediction is the smallest size from which 64 consecutive
  sizes all fit.

* ``qemu-cm4`` -- *measured* on the emulated Cortex-M4 with the user's TFLM tree
  (:mod:`tinydeploy.arena_measure`); the tree's kernels set the flavour.

Checked against native TFLM ground truth in ``tests/data``: the replay with 8-byte
pointers reproduces x86-64 ``arena_used_bytes`` exactly and ``min_arena`` to within
16 bytes; with 32-bit struct sizes it reproduces the Cortex-M4 ``arena_used_bytes`` and
``min_arena_cm4`` exactly on all 18 models (tests/test_arena_zoo.py).
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import tflm_py
from .arena_kernels import FLAVOURS, REFERENCE
from .arena_model import (
    ALIGN,
    CORTEX_M,
    HOST64_NATIVE,
    KNOWN_OPS,
    ROBUST_WINDOW,
    Abi,
    Graph,
    OutOfArena,
    align_up,
    greedy_plan,
    planned_buffers,
    predict,
    simulate,
)
from .errors import TinyDeployError
from .facts import ModelFacts, load

TARGETS = ("cortex-m", "host64", "qemu-cm4")

# --- host64: measured with the TFLM Python runtime, crash-safe --------------------------
# A "zygote" child imports the runtime once, then forks one grandchild per trial; the
# grandchild's exit status is the answer (0 ok, 1 fail, killed by a signal: crash).
_ZYGOTE = r"""
import json, os, signal, sys, tempfile
import numpy as np
from tflite_micro.python.tflite_micro import runtime
data = open(sys.argv[1], "rb").read()

def build(n):
    it = runtime.Interpreter.from_bytes(data, arena_size=n)
    i = 0
    while True:
        try:
            d = it.get_input_details(i)
        except Exception:
            break
        it.set_input(np.zeros(tuple(int(x) for x in d["shape"]), dtype=d["dtype"]), i)
        i += 1
    it.invoke()
    return it

def probe(n):
    signal.alarm(300)  # a hung runtime kills this worker; the parent restarts it
    it = build(n)
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            it.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        signal.alarm(0)
        return tmp.read().decode(errors="replace")

for line in sys.stdin:
    cmd = line.strip()
    if cmd.startswith("probe"):
        try:
            out = {"ok": True, "text": probe(int(cmd.split()[1]))}
        except Exception as exc:
            out = {"ok": False, "text": str(exc)}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
        continue
    n = int(cmd)
    pid = os.fork()
    if pid == 0:
        signal.alarm(60)  # a hung trial dies by SIGALRM and counts as a crash
        code = 1
        try:
            build(n)
            code = 0
        except Exception:
            pass
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        res = "crash"
    else:
        res = "ok" if os.WEXITSTATUS(status) == 0 else "fail"
    sys.stdout.write(res + "\n")
    sys.stdout.flush()
"""


class HostRuntime:
    """A crash-safe session with the TFLM Python runtime for one model (a context
    manager). ``trial(n)`` -> "ok" | "fail" | "crash"; ``probe()`` -> the
    RecordingMicroAllocator text for a 1 MiB arena."""

    def __init__(self, data: bytes) -> None:
        import tempfile

        from .hostref import MISSING_FIX, MISSING_TOOL

        if not tflm_py.available():
            raise TinyDeployError("tool_missing", tool=f"{MISSING_TOOL}, which measures "
                                                       "the arena on this machine",
                                  fix="use --target cortex-m (predicted) or --target "
                                      "qemu-cm4 --tflm-src DIR (measured), or " + MISSING_FIX)
        self._dir = tempfile.TemporaryDirectory(prefix="td-arena-")
        self._model = Path(self._dir.name) / "model.tflite"
        self._model.write_bytes(data)
        self._proc: subprocess.Popen[str] | None = None
        self.trials: dict[int, str] = {}

    def _start(self) -> subprocess.Popen[str]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _ZYGOTE, str(self._model)], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        return self._proc

    def _ask(self, cmd: str) -> str:
        for _ in range(3):  # the zygote itself never runs a trial; restart if it died
            proc = self._start()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(cmd + "\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
            except (BrokenPipeError, OSError):
                line = ""
            if line:
                return line.strip()
            self.close_proc()
        raise TinyDeployError("build_failed", what="TFLM Python runtime", rc="?",
                              tail="the runtime worker process keeps dying",
                              fix="check `python -c 'import tflite_micro'`")

    def trial(self, n: int) -> str:
        if n not in self.trials:
            self.trials[n] = self._ask(str(int(n)))
        return self.trials[n]

    def ok(self, n: int) -> bool:
        return self.trial(n) == "ok"

    def probe(self, name: str = "model") -> str:
        """Allocations text of one run with a generous arena (1 MiB, else up to 64 MiB)."""
        import json

        for size in (1 << 20, 1 << 24, 1 << 26):
            reply = json.loads(self._ask(f"probe {size}"))
            if reply["ok"]:
                return str(reply["text"])
        problem = " ".join(reply["text"].split())[:300]
        raise TinyDeployError("model_rejected", path=name,
                              problem=f"the TFLM runtime cannot run it ({problem})",
                              fix="check the model with `tinydeploy check`")

    def close_proc(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None

    def __enter__(self) -> HostRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_proc()
        self._dir.cleanup()


def parse_allocations(text: str) -> dict[str, int]:
    """RecordingMicroAllocator text -> {"total"/"head"/"tail"/bucket name: bytes}."""
    out = {k: int(v) for k, v in re.findall(r"allocation (total|head|tail) (\d+)", text)}
    for name, used in re.findall(r"'([^']+)' used (\d+) bytes", text):
        out[name] = int(used)
    return out


def search_host64(rt: HostRuntime, start: int, limit: int = 1 << 27,
                  name: str = "model") -> int:
    """Smallest arena (byte-exact) that allocates and invokes; min works, min-1 fails."""
    hi = max(64, align_up(start, ALIGN))
    while not rt.ok(hi):
        hi *= 2
        if hi > limit:
            raise TinyDeployError("arena_not_found", limit=limit, path=name)
    lo = hi // 2
    while lo > 0 and rt.ok(lo):
        hi, lo = lo, lo // 2
    while hi - lo > ALIGN:  # coarse bisection on 16-byte steps
        mid = align_up((lo + hi) // 2, ALIGN)
        if mid in (lo, hi):
            break
        lo, hi = (lo, mid) if rt.ok(mid) else (mid, hi)
    best = hi
    for n in range(hi - 1, max(lo, hi - 4 * ALIGN) - 1, -1):  # byte-exact edge scan
        if rt.ok(n):
            best = n
    while rt.ok(best - 1):  # never report a size whose predecessor works
        best -= 1
    if not rt.ok(best):
        raise TinyDeployError("arena_not_found", limit=best, path=name)
    return best


# --- public API ------------------------------------------------------------------------
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
        Cortex-M prediction plus its margin (:mod:`tinydeploy.arena_plan`)."""
        if self.cortex_m_bytes is None:
            return None
        from .arena_plan import FLAVOURS, MODELLED_MARGIN, unmodelled_margin

        if self.flavour in FLAVOURS:
            return self.cortex_m_bytes + math.ceil(self.cortex_m_bytes * MODELLED_MARGIN)
        return unmodelled_margin(self.cortex_m_bytes)

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


def predict_arena(model: str | Path | bytes | ModelFacts, measure: bool = True) -> int:
    """Cortex-M arena prediction for the firmware renderer (no search).

    With ``measure`` the planned head is taken from one 1 MiB run of the TFLM Python
    runtime (about 0.3 s; it then includes every kernel's scratch buffers); without it the
    prediction is a pure replay (instant, but kernels that request scratch buffers not in
    the kernel table are missed)."""
    facts = load(model)
    g = Graph.from_facts(facts)
    head = None
    if measure and tflm_py.available():  # else the pure replay
        with HostRuntime(facts.data) as rt:
            head = parse_allocations(rt.probe()).get("head")
    return _predict(g, head)[0]


def predict_flavour(model: str | Path | bytes | ModelFacts, flavour: str = REFERENCE) -> int:
    """The cortex-m prediction for ``flavour`` (``reference`` | ``cmsis-nn``): a pure
    replay (instant), no runtime cross-check."""
    if flavour not in FLAVOURS:
        raise TinyDeployError("bad_argument", problem=f"unknown kernel flavour '{flavour}'",
                              fix=f"choose one of: {', '.join(FLAVOURS)}")
    return _predict(Graph.from_facts(load(model), flavour), None)[0]


def _predict(g: Graph, head: int | None) -> tuple[int, dict[str, int]]:
    """Predict with the measured head when it differs from the replayed plan (the extra
    is scratch space of kernels: assume one unknown scratch request per node). The
    runtime's head (reference kernels) is only consulted for the reference flavour."""
    if head is None or g.flavour != REFERENCE or head == greedy_plan(planned_buffers(g)):
        return predict(g, CORTEX_M)
    extra = len(g.ops) if head > greedy_plan(planned_buffers(g)) else 0

    def fits(n: int) -> bool:
        try:
            simulate(g, n, CORTEX_M, head, extra)
            return True
        except OutOfArena:
            return False

    n = head
    while not fits(n):
        n += ALIGN
    n = max(0, n - 4 * ALIGN)
    run = 0
    while run < ROBUST_WINDOW:
        run = run + 1 if fits(n) else 0
        n += 1
    best = n - ROBUST_WINDOW
    return best, simulate(g, best, CORTEX_M, head, extra)


def arena(model: str | Path | bytes | ModelFacts, target: str = "cortex-m",
          flavour: str = REFERENCE, tflm_src: str | Path | None = None,
          timeout: float | None = None) -> ArenaResult:
    """Smallest tensor arena for ``target`` (see the module docstring).

    Args:
        model: int8 ``.tflite`` path, bytes or :class:`ModelFacts`.
        target: ``cortex-m`` (predicted for 32-bit, about a second), ``host64`` (measured
            in the TFLM Python runtime, one child process per trial) or ``qemu-cm4``
            (measured on the emulated Cortex-M4 with the TFLM tree ``tflm_src``, each
            trial a fresh boot; :mod:`tinydeploy.arena_measure`).
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
    if target not in TARGETS:
        raise TinyDeployError("bad_argument", problem=f"unknown arena target '{target}'",
                              fix=f"choose one of: {', '.join(TARGETS)}")
    if flavour not in FLAVOURS:
        raise TinyDeployError("bad_argument", problem=f"unknown kernel flavour '{flavour}'",
                              fix=f"choose one of: {', '.join(FLAVOURS)}")
    if timeout is not None and (target != "qemu-cm4" or not timeout > 0):
        raise TinyDeployError("bad_argument",
                              problem="--timeout is the seconds one qemu-cm4 trial may take",
                              fix="pass a positive --timeout with --target qemu-cm4, or omit it")
    t0 = time.perf_counter()
    facts = load(model)
    name = Path(facts.path).name if facts.path else "<bytes>"
    from .log import stage

    stage("arena", f"{name}: {'predicting' if target == 'cortex-m' else 'measuring'} the "
                   f"smallest arena ({target})")
    if target == "qemu-cm4":
        from .arena_measure import measure_arena

        m = measure_arena(facts, tflm_src, timeout=timeout)
        g = Graph.from_facts(facts, m.flavour)
        pred, bd = _predict(g, None)
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
    pred, bd = _predict(g, measured.get("head"))
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


__all__ = ["ArenaResult", "Graph", "HostRuntime", "arena", "predict_arena", "predict_flavour",
           "search_host64",
           "simulate", "greedy_plan", "parse_allocations", "CORTEX_M", "HOST64_NATIVE", "Abi",
           "TARGETS"]
