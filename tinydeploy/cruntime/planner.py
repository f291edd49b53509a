"""Offline memory planner: place intermediate tensors in one static arena.

A buffer lives from the operator that writes it to the last operator that reads it
(inclusive). Two buffers may share bytes only if their lifetimes do not overlap. The lower
bound on any plan is the largest sum of sizes of buffers live at the same operator; the
greedy placement (several orderings, best-fit gap for each buffer, smallest result kept)
usually reaches it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Buffer:
    tensor: int  # root tensor index (aliases share it)
    name: str
    size: int
    first: int  # first operator index
    last: int  # last operator index (inclusive)
    offset: int = -1
    # (tensor, d): may be placed exactly d bytes below that buffer although both are live at
    # the operator that reads it and writes this one (see overlap.py)
    pin: tuple[int, int] | None = None

    def overlaps(self, other: Buffer) -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass
class MemoryPlan:
    buffers: list[Buffer]
    size: int  # arena bytes
    lower_bound: int
    naive: int  # sum of all buffer sizes (no reuse)
    alignment: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"arena_bytes": self.size, "lower_bound": self.lower_bound,
                "no_reuse_bytes": self.naive, "alignment": self.alignment,
                "buffers": [asdict(b) for b in self.buffers]}

    def summary(self) -> str:
        return (f"arena {self.size} B (lower bound {self.lower_bound} B, "
                f"{self.naive} B without reuse, {len(self.buffers)} buffers)")


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def lower_bound(buffers: list[Buffer], alignment: int = 1) -> int:
    """Largest sum of simultaneously live buffers; a pinned output and the input it may
    overlap count as their joint span at the operator that links them."""
    if not buffers:
        return 0
    by_id = {b.tensor: b for b in buffers}
    best = 0
    for k in range(min(b.first for b in buffers), max(b.last for b in buffers) + 1):
        live = [b for b in buffers if b.first <= k <= b.last]
        total = sum(_align(b.size, alignment) for b in live)
        for y in live:
            x = by_id.get(y.pin[0]) if y.pin is not None else None
            if x is not None and y.first <= k <= x.last:  # (a patch stage: several ops)
                d = y.pin[1]  # type: ignore[index]
                span = max(x.size, y.size - d) - min(0, -d)
                total -= x.size + y.size - min(span, x.size + y.size)
        best = max(best, total)
    return best


def _pin_offset(b: Buffer, offsets: dict[int, int], placed: list[tuple[Buffer, int]]
                ) -> int | None:
    if b.pin is not None and b.pin[0] in offsets:
        return offsets[b.pin[0]] - b.pin[1]
    for p, o in placed:
        if p.pin is not None and p.pin[0] == b.tensor:
            return o + p.pin[1]
    return None


def _relation_holds(b: Buffer, off_b: int, p: Buffer, off_p: int) -> bool:
    """True if b and p are a pinned pair placed so the output starts >= d below the input."""
    if b.pin is not None and b.pin[0] == p.tensor:
        return off_b <= off_p - b.pin[1]
    if p.pin is not None and p.pin[0] == b.tensor:
        return off_p <= off_b - p.pin[1]
    return False


def _fits(b: Buffer, want: int, conflicts: list[tuple[Buffer, int]], alignment: int) -> bool:
    size = _align(b.size, alignment)
    for p, o in conflicts:
        if _relation_holds(b, want, p, o):
            continue
        if o < want + size and want < o + _align(p.size, alignment):
            return False
    return True


def _reserve(b: Buffer, buffers: list[Buffer], offsets: dict[int, int], depth: int = 0) -> int:
    """Bytes to keep free below b for the not yet placed outputs pinned below it."""
    best = 0
    for c in buffers:
        if c.pin is not None and c.pin[0] == b.tensor and c.tensor not in offsets and depth < 32:
            best = max(best, c.pin[1] + _reserve(c, buffers, offsets, depth + 1))
    return _align(best, 1)


def _place(buffers: list[Buffer], key: Callable[[Buffer], Any], alignment: int,
           use_pins: bool = True, reserve: bool = False) -> dict[int, int]:
    placed: list[tuple[Buffer, int]] = []
    offsets: dict[int, int] = {}
    for b in sorted(buffers, key=key):
        below = _align(_reserve(b, buffers, offsets), alignment) if reserve else 0
        size = _align(b.size, alignment) + below
        conflicts = sorted(((p, o) for p, o in placed if p.overlaps(b)), key=lambda x: x[1])
        want = _pin_offset(b, offsets, placed) if use_pins else None
        if want is not None and want % alignment == 0 and _fits(b, want, conflicts, alignment):
            placed.append((b, want))
            offsets[b.tensor] = want
            continue
        best: tuple[int, int] | None = None  # (gap, offset)
        end = 0
        for p, o in conflicts:
            gap = o - end
            if gap >= size and (best is None or gap < best[0]):
                best = (gap, end)
            end = max(end, o + _align(p.size, alignment))
        offset = (best[1] if best is not None else end) + below
        placed.append((b, offset))
        offsets[b.tensor] = offset
    return offsets


def _place_candidates(buffers: list[Buffer], key: Callable[[Buffer], Any],
                      alignment: int) -> dict[int, int]:
    """Try every start next to a conflicting buffer (or at a pin distance); keep the one
    giving the smallest span so far."""
    placed: list[tuple[Buffer, int]] = []
    offsets: dict[int, int] = {}
    lo, hi = 0, 0
    for b in sorted(buffers, key=key):
        size = _align(b.size, alignment)
        conflicts = [(p, o) for p, o in placed if p.overlaps(b)]
        cands = {0}
        for p, o in conflicts:
            cands.update((o + _align(p.size, alignment), o - size))
            if b.pin is not None and b.pin[0] == p.tensor:
                cands.add(o - b.pin[1])
            if p.pin is not None and p.pin[0] == b.tensor:
                cands.add(o + p.pin[1])
        best: tuple[int, int, int] | None = None
        for s in sorted(c for c in cands if c % alignment == 0):
            if _fits(b, s, conflicts, alignment):
                span = max(hi, s + size) - min(lo, s)
                if best is None or (span, abs(s)) < best[:2]:
                    best = (span, abs(s), s)
        start = best[2] if best is not None else hi
        placed.append((b, start))
        offsets[b.tensor] = start
        lo, hi = min(lo, start), max(hi, start + size)
    return offsets


_ORDERS: list[Callable[[Buffer], Any]] = [
    lambda b: (-b.size, b.first),
    lambda b: (-(b.last - b.first), -b.size),
    lambda b: (b.first, -b.size),
    lambda b: (-b.size * (b.last - b.first + 1), b.first),
    lambda b: (b.first, b.tensor),
]


def plan(buffers: list[Buffer], alignment: int = 1) -> MemoryPlan:
    """Assign offsets (in place) and return the plan with its size and lower bound.

    A pin is a permission, yet placing a pair exactly at its distance can chain buffers
    into a taller stack than placing them apart (person_detect: the input, pinned below
    the first convolution's output, ends above the peak). While the plan exceeds the lower
    bound, the pins of the buffers ending at its top are dropped one at a time (a few
    rounds) and a smaller plan kept."""
    bound = lower_bound(buffers, alignment)
    best_size, best_offsets = _best_placement(buffers, alignment)
    for _ in range(RELAX_ROUNDS):
        if best_size <= bound:
            break
        top = {b.tensor for b in buffers if best_offsets[b.tensor] + _align(b.size, alignment)
               == best_size}
        pinned = [b for b in buffers if b.pin is not None
                  and (b.tensor in top or b.pin[0] in top)][:RELAX_TRIES]
        for b in pinned:
            keep, b.pin = b.pin, None
            size, offsets = _best_placement(buffers, alignment)
            if size < best_size:
                best_size, best_offsets = size, offsets
                break
            b.pin = keep
        else:
            break
    for b in buffers:
        b.offset = best_offsets[b.tensor]
    for b in buffers:
        x = next((c for c in buffers if b.pin is not None and c.tensor == b.pin[0]), None)
        if x is not None and (b.offset + b.size <= x.offset or x.offset + x.size <= b.offset):
            b.pin = None  # not used: placed apart
    _verify(buffers)
    return MemoryPlan(buffers=sorted(buffers, key=lambda b: (b.first, b.tensor)),
                      size=max(best_size, 0), lower_bound=bound,
                      naive=sum(_align(b.size, alignment) for b in buffers),
                      alignment=alignment)


RELAX_ROUNDS = 4  # plan(): rounds of dropping a pin at the top of the arena
RELAX_TRIES = 4  # pins tried per round


def _best_placement(buffers: list[Buffer], alignment: int) -> tuple[int, dict[int, int]]:
    """The smallest (size, offsets) over the placement strategies."""
    best_size, best_offsets = -1, {}
    strategies: list[Callable[[], dict[int, int]]] = []
    for key in _ORDERS:
        for use_pins, reserve in ((True, True), (True, False), (False, False)):
            strategies.append(lambda k=key, u=use_pins, r=reserve:
                              _place(buffers, k, alignment, u, r))
        if len(buffers) <= 400:
            strategies.append(lambda k=key: _place_candidates(buffers, k, alignment))
    for strategy in strategies:
        offsets = strategy()
        if offsets:
            base = min(offsets.values())
            offsets = {k: v - base for k, v in offsets.items()}
        size = max((offsets[b.tensor] + _align(b.size, alignment) for b in buffers),
                   default=0)
        if best_size < 0 or size < best_size:
            best_size, best_offsets = size, offsets
    return best_size, best_offsets


def _verify(buffers: list[Buffer]) -> None:
    for i, a in enumerate(buffers):
        for b in buffers[i + 1:]:
            if _relation_holds(a, a.offset, b, b.offset):
                continue
            if a.overlaps(b) and a.offset < b.offset + b.size and b.offset < a.offset + a.size:
                raise AssertionError(f"planner overlap: tensors {a.tensor} and {b.tensor}")


def add_buffers(mem: MemoryPlan, extra: list[Buffer]) -> MemoryPlan:
    """``mem`` plus buffers placed after it (each at the lowest offset free during its
    lifetime, so short-lived scratch often fits in a gap without growing the arena)."""
    placed = list(mem.buffers)
    size = mem.size
    for b in extra:
        conflicts = sorted((p for p in placed if p.overlaps(b)), key=lambda p: p.offset)
        want = 0
        for p in conflicts:
            if p.offset < want + b.size and want < p.offset + p.size:
                want = max(want, _align(p.offset + p.size, mem.alignment))
        b.offset = want
        placed.append(b)
        size = max(size, _align(want + b.size, mem.alignment))
    _verify(placed)
    return MemoryPlan(buffers=sorted(placed, key=lambda b: (b.first, b.tensor)), size=size,
                      lower_bound=max(mem.lower_bound, lower_bound(placed, mem.alignment)),
                      naive=mem.naive + sum(_align(b.size, mem.alignment) for b in extra),
                      alignment=mem.alignment)
