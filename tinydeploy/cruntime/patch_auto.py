"""Whether to run a first stage patch-based (``--patch auto | off | FIRST:LAST:BANDS``).

``auto`` (the default): the planner tries a bounded set of candidate stages around the
operator where the most bytes are live in the plain plan (ranges starting at operator 0 or
up to ``STARTS`` operators before that peak, ending at it or up to ``ENDS`` operators after,
each in a few band counts), lets :func:`tinydeploy.cruntime.patch.plan_stage` refuse what
it cannot band, and keeps the stage that lowers the arena most, if it saves at least
``MIN_SAVED_RATIO`` of the arena and ``MIN_SAVED_BYTES``, and the outputs it recomputes
(``Stage.recompute_macs_ratio`` over the stage's multiply-accumulates) cost at most
``MAX_EXTRA_MACS`` of the whole model's. Candidates are screened by the live-tensor lower
bound of their plan (cheap), the few best planned with pixel-pair scratch, the winner
planned in full and compared with the plain plan. ``off``: never. ``FIRST:LAST:BANDS``:
that stage (refused in one line if it cannot run in bands).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import TinyDeployError
from .graph import Graph
from .patch import Stage, plan_stage

AUTO, OFF = "auto", "off"
PatchChoice = str | tuple[int, int, int]  # "auto" | "off" | (first op, last op, bands)
MIN_SAVED_RATIO = 0.05  # of the plain plan's arena
MIN_SAVED_BYTES = 256
MAX_EXTRA_MACS = 0.01  # recomputed multiply-accumulates, of the whole model's
BANDS = (2, 3, 4, 6, 8, 12, 16)
STARTS = 4  # operators before the peak a stage may start at (and at operator 0)
ENDS = 6  # operators after the peak a stage may end at
SHORTLIST = 3  # candidates planned (pixel-pair scratch) after the lower-bound screen
NEAR_BEST = 0.01  # a cheaper stage within this share of the best RAM wins the tie


def parse_choice(value: PatchChoice | None, what: str = "--patch") -> PatchChoice:
    """``auto`` (also None), ``off``, ``FIRST:LAST:BANDS`` or a (first, last, bands) tuple
    -> the choice (``bad_argument`` in one line otherwise)."""
    if value is None:
        return AUTO
    if isinstance(value, str) and value.strip().lower() in (AUTO, OFF):
        return value.strip().lower()
    try:
        parts = value.split(":") if isinstance(value, str) else list(value)
        first, last, bands = (int(v) for v in parts)
    except (TypeError, ValueError):
        raise TinyDeployError("bad_argument", problem=f"{what} {value!r} is not auto, off or "
                              "FIRST_OP:LAST_OP:BANDS",
                              fix="give auto, off or a stage like 0:3:6") from None
    return first, last, bands


def refuse_for_tflm(value: PatchChoice | None, runtime: str | None,
                    given: bool = False) -> PatchChoice:
    """The parsed choice; ``bad_argument`` where ``runtime`` is not the C runtime and a
    stage is forced or switched off (or ``given`` at all: an explicit ``--patch``)."""
    c = parse_choice(value)
    if runtime != "c" and (given or c != AUTO):
        raise TinyDeployError("bad_argument", problem="--patch runs the C runtime's operators "
                              "in row bands; this command builds the TFLM firmware",
                              fix="add --runtime c, or drop --patch")
    return c


def choice_key(value: PatchChoice | None) -> str:
    """The choice as text for build fingerprints (``auto``, ``off`` or ``F:L:B``)."""
    c = parse_choice(value)
    return c if isinstance(c, str) else ":".join(map(str, c))


class Plans(Protocol):
    """Arena sizes of the model's plan with a stage (None: the plain plan)."""

    def full(self, stage: Stage | None) -> int:
        """The plan code generation uses."""

    def quick(self, stage: Stage | None) -> int:
        """A plan with pixel-pair scratch (one trial: an upper bound of ``full``)."""

    def bound(self, stage: Stage | None) -> int:
        """The live-tensor lower bound of ``full`` (no placement)."""

    def live(self) -> list[int]:
        """Bytes live at each operator in the plain plan."""


@dataclass
class Decision:
    """The stage to run (None: none), how it was chosen and what memory.json reports."""

    stage: Stage | None
    how: str  # "auto" | "forced" | "off"
    report: dict[str, Any]


def extra_macs(stage: Stage, macs: list[int]) -> float:
    """Multiply-accumulates the stage recomputes, as a share of the model's."""
    total = sum(macs)
    inside = sum(macs[k] for k in stage.ops if k < len(macs))
    return round((stage.recompute_macs_ratio - 1.0) * inside / max(total, 1), 4)


def candidates(g: Graph, live: list[int], macs: list[int]) -> list[Stage]:
    """Stages ``plan_stage`` accepts around the peak within the MAC budget (any range, a
    chain or not: plan_stage decides), each (first, last, bands) once."""
    n = len(g.ops)
    if n < 2 or not live:
        return []
    peak = max(range(n), key=lambda k: live[k])
    starts = sorted({0, *range(max(0, peak - STARTS), peak + 1)})
    ends = range(max(peak, 1), min(n, peak + ENDS + 1))
    found: dict[tuple[int, int, int], Stage] = {}
    for first in starts:
        for last in ends:
            if last <= first:
                continue
            for bands in BANDS:
                try:
                    st = plan_stage(g, first, last, bands)
                except TinyDeployError:
                    continue  # (a refusal may depend on the band count: try each)
                if extra_macs(st, macs) <= MAX_EXTRA_MACS:
                    found.setdefault((st.first, st.last, st.bands), st)
    return list(found.values())


def choose(g: Graph, choice: PatchChoice | None, macs: list[int], plans: Plans) -> Decision:
    """The stage for ``choice`` (see the module docstring) and its memory.json entry."""
    c = parse_choice(choice)
    if c == OFF:
        return Decision(None, OFF, {})
    if not isinstance(c, str):
        st = plan_stage(g, *c)
        return Decision(st, "forced", _report(st, "forced", plans, macs))
    base = plans.full(None)
    need = max(MIN_SAVED_BYTES, int(base * MIN_SAVED_RATIO))
    found = candidates(g, plans.live(), macs)
    screened = sorted((s for s in found if plans.bound(s) <= base - need),
                      key=lambda s: (plans.bound(s), extra_macs(s, macs)))[:SHORTLIST]
    if not screened:
        return Decision(None, AUTO, {})
    sizes = {id(s): plans.quick(s) for s in screened}
    best = min(sizes.values())
    ok = [s for s in screened if sizes[id(s)] <= best + int(best * NEAR_BEST)]
    for st in sorted(ok, key=lambda s: (extra_macs(s, macs), sizes[id(s)])):
        if plans.full(st) <= base - need:
            rep = _report(st, AUTO, plans, macs)
            rep["candidates"] = len(found)
            return Decision(st, AUTO, rep)
    return Decision(None, AUTO, {})


def _report(st: Stage, how: str, plans: Plans, macs: list[int]) -> dict[str, Any]:
    base, size = plans.full(None), plans.full(st)
    return {"chosen": how, "ops": [st.first, st.last], "bands": st.bands,
            "recompute_macs_ratio": st.recompute_macs_ratio,
            "carried_bytes": st.carried_bytes, "extra_macs_ratio": extra_macs(st, macs),
            "saved_bytes": base - size, "saved_ratio": round((base - size) / max(base, 1), 4)}
