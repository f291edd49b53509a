"""Known arithmetic differences between TFLM versions, as data (``tflm_differences.json``).

The host reference is one TFLM build (the pinned pip ``tflite-micro``); a device runs
another (the board's TFLM library, or the C runtime). Where two TFLM versions compute an
operator differently, a correct device can differ from the host by a few LSB. Each entry
names the operator, the dtype of its output, the largest difference (``lsb``), the pip
``tflite-micro`` builds it was seen with (``host_versions``) and the other TFLM version.

``explain(facts, output, max_lsb)`` returns the entry that accounts for a mismatch on one
model output: the output is written by that operator in that dtype, every |device - host|
on it is at most ``lsb``, and the installed host reference is one the entry names (after
an upgrade nothing is explained: the safe direction). docs/tflm-differences.md describes
each entry.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from .facts import ModelFacts, TensorFacts

DATA = Path(__file__).with_name("tflm_differences.json")
FIELDS = ("id", "op", "dtype", "lsb", "host_versions", "other", "description")


@functools.cache
def differences() -> tuple[dict[str, Any], ...]:
    """Every entry of ``tflm_differences.json`` (each has the keys of ``FIELDS``)."""
    doc = json.loads(DATA.read_text(encoding="utf-8"))
    return tuple(doc["differences"])


def producer(facts: ModelFacts, tensor: int) -> str | None:
    """The operator of the main subgraph that writes tensor ``tensor`` (None: none)."""
    model = facts.model
    if model is None or not model.subgraphs:
        return None
    ops = model.subgraphs[0].operators or []
    for op, name in zip(ops, facts.op_sequence, strict=False):
        if op.outputs is not None and tensor in [int(i) for i in op.outputs]:
            return name
    return None


def explain(facts: ModelFacts, out: TensorFacts, max_lsb: int,
            host_version: str | None = None) -> dict[str, Any] | None:
    """The known difference accounting for a mismatch of at most ``max_lsb`` on output
    ``out`` with the host reference ``host_version`` (default: the installed one)."""
    if max_lsb <= 0:
        return None
    if host_version is None:
        from .hostref import tflm_version

        host_version = tflm_version()
    op = producer(facts, out.index)
    for entry in differences():
        if (entry["op"] == op and entry["dtype"] == out.dtype and max_lsb <= entry["lsb"]
                and host_version in entry["host_versions"]):
            return entry
    return None


def note(entry: dict[str, Any], output: str, samples: int) -> str:
    """One report line for a matched entry."""
    return (f"known TFLM version difference: {samples} samples of '{output}' differ by <= "
            f"{entry['lsb']} LSB ({entry['op']} {entry['dtype']}: {entry['description']}; "
            f"host tflite-micro {'/'.join(entry['host_versions'])} vs {entry['other']})")
