"""Prediction: the smallest arena a 32-bit Cortex-M needs, from the allocator replay.

Layer 5 of :mod:`tinydeploy.arena`: :func:`predict_flavour` is a pure replay for a kernel
flavour; :func:`predict_with_head` replaces the replayed plan by a measured head (the
reference flavour is cross-checked with the TFLM Python runtime, :mod:`.host`); when the
runtime reports more, the extra is scratch space of kernels the tables do not know, and one
unknown scratch request per node is assumed for the planning-phase need.
"""

from __future__ import annotations

from pathlib import Path

from .. import tflm_py
from ..errors import check_choice
from ..facts import ModelFacts, load
from .graph import Graph
from .host import HostRuntime, parse_allocations
from .library import FLAVOURS, REFERENCE
from .replay import (
    ALIGN,
    CORTEX_M,
    HOST64_NATIVE,
    ROBUST_WINDOW,
    OutOfArena,
    greedy_plan,
    planned_buffers,
    predict,
    simulate,
)


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
    return predict_with_head(g, head)[0]


def predict_flavour(model: str | Path | bytes | ModelFacts, flavour: str = REFERENCE) -> int:
    """The cortex-m prediction for ``flavour`` (``reference`` | ``cmsis-nn``): a pure
    replay (instant), no runtime cross-check."""
    check_choice(flavour, FLAVOURS, "kernel flavour")
    return predict_with_head(Graph.from_facts(load(model), flavour), None)[0]


def predict_with_head(g: Graph, head: int | None) -> tuple[int, dict[str, int]]:
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


def predict_host64(model: str | Path | bytes | ModelFacts) -> int:
    """The replay's minimum for TFLM on a 64-bit host (reference kernels, 8-byte pointers:
    the native pseudo-board), a pure replay."""
    return predict(Graph.from_facts(load(model)), HOST64_NATIVE)[0]
