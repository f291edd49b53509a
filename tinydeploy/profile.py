"""Per-layer cost of the C runtime (``validate --profile``, boards qemu-cm4 and native).

A profiling build (``-DTD_PROFILE``) of the generated ``td_invoke()`` calls
``td_profile_mark(op)`` before each operator and with the operator count at the end; the
board firmware writes one line ``P m0 m1 ... mN`` per inference: SysTick ticks on qemu-cm4
(x40 = emulated instructions, as for whole inferences), CLOCK_MONOTONIC nanoseconds on
native. Normal builds contain no trace of it.

``read_marks(path, n_ops)`` parses the file, ``layer_table(facts, marks, board)`` turns it
into one row per operator (mean cost over the inferences, share of the total; ``layers``
does both), ``report_section`` into the HTML report's table.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from .errors import TinyDeployError
from .facts import ModelFacts

TICK_INSTRUCTIONS = 40  # qemu-cm4: SysTick ticks x 40 = instructions (cm4_main.c)
BOARDS = ("qemu-cm4", "native")


def unit(board: str) -> str:
    """The cost unit of a board's profile: instructions (qemu-cm4) or ns (native)."""
    return "instructions" if board == "qemu-cm4" else "ns"


def read_marks(path: Path, n_ops: int) -> np.ndarray:
    """The marks of every complete inference in ``path``: int64 array [inferences, n_ops+1].

    Raises ``protocol_error`` when the file is missing or holds no complete line."""
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise TinyDeployError("protocol_error", problem=f"no per-layer profile: {exc}") from exc
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == n_ops + 2 and parts[0] == "P" and all(p.isdigit() for p in parts[1:]):
            rows.append([int(p) for p in parts[1:]])
    if not rows:
        raise TinyDeployError("protocol_error",
                              problem=f"the per-layer profile {path} has no complete line "
                                      f"of {n_ops + 1} marks")
    return np.asarray(rows, dtype=np.int64)


# operators the C runtime runs inside another one's call (td_model.c): a patch stage's band
# loop (at its first operator), FC streaming (at the producer), a fused RELU / RELU6
_STAGE = re.compile(r"/\* (\d+): \w+ \*/ \{ /\* ops (\d+)\.\.(\d+) in ")
_STREAM = re.compile(r"/\* (\d+): \w+ \*/ /\* FC streaming: in op (\d+)'s band loop")
_FUSED = re.compile(r"/\* (\d+): \w+ \*/ /\* fused into op (\d+) \*/")


def run_inside(model_c: str) -> dict[int, int]:
    """Operator -> the operator whose call runs it (only those run inside another's): their
    own profile marks are empty, their cost is in that operator's."""
    out: dict[int, int] = {}
    for m in _STAGE.finditer(model_c):
        first, last = int(m.group(2)), int(m.group(3))
        out.update({k: first for k in range(first + 1, last + 1)})
    for rx in (_STREAM, _FUSED):
        out.update({int(m.group(1)): int(m.group(2)) for m in rx.finditer(model_c)})
    return out


def layer_table(facts: ModelFacts, marks: np.ndarray, board: str,
                inside: dict[int, int] | None = None) -> list[dict[str, Any]]:
    """One row per operator: index, op name, output shape, mean cost and share (%), and
    ``in_op`` for an operator run inside another's call (``inside``, see run_inside)."""
    from .cruntime.graph import read_graph

    g = read_graph(facts)
    scale = TICK_INSTRUCTIONS if board == "qemu-cm4" else 1
    cost = np.diff(marks, axis=1).mean(axis=0) * scale
    total = float(cost.sum()) or 1.0
    rows = []
    for op, c in zip(g.ops, cost, strict=True):
        y = g.t(op.outputs[0])
        rows.append({"index": op.index, "op": op.name, "output_shape": list(y.shape),
                     "cost": round(float(c), 1), "share_pct": round(100.0 * float(c) / total, 2)})
        if inside and op.index in inside:
            rows[-1]["in_op"] = inside[op.index]
    return rows


def layers(facts: ModelFacts, path: Path, board: str) -> list[dict[str, Any]]:
    """``layer_table`` of the profile file a profiling run of ``facts`` wrote (the generated
    ``model/td_model.c`` beside it says which operators run inside another's call)."""
    from .cruntime.graph import read_graph

    model_c = path.parent / "model" / "td_model.c"
    inside = run_inside(model_c.read_text()) if model_c.is_file() else {}
    return layer_table(facts, read_marks(path, len(read_graph(facts).ops)), board, inside)


def report_section(rows: list[dict[str, Any]], board: str) -> dict[str, str]:
    """The report's per-layer table: ``op N NAME [shape]`` -> ``cost unit (share %)``."""
    u = unit(board)
    return {f"op {r['index']} {r['op']} {r['output_shape']}":
            f"in op {r['in_op']}'s call (counted there)" if "in_op" in r else
            f"{r['cost']:.0f} {u} ({r['share_pct']:.1f} %)" for r in rows}
