"""Fusion of a RELU / RELU6 into the kernel that produces its input (bit-exact cases only).

An int8 RELU whose input and output share scale and zero point is ``clamp(x, max(-128,
zp), 127)`` (its requantization by 1.0 -- multiplier 2^30, shift 1 -- is the identity),
and TFLM's int8 RELU6 is the raw ``clamp(x, zp, zp + round(6 / scale))``. The producing
kernels (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, the pools, ADD, MUL of the int8
emitter) end with ``clamp(v, act_min, act_max)``; clamping twice is clamping once to the
intersection when the two ranges meet. So the producer takes the intersection, the
activation emits nothing and its output shares the producer's bytes (an alias): one pass
over the tensor less, and no second buffer even where in-place placement was impossible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import quant
from .graph import Graph
from .support import ext_reason

PRODUCERS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D",
                       "AVERAGE_POOL_2D", "ADD", "MUL"})


@dataclass(frozen=True)
class Fusion:
    """Activation ``op`` folded into ``producer``, which then clamps to [lo, hi]."""

    op: int
    name: str
    producer: int
    lo: int
    hi: int


def activation_clamp(g: Graph, op_index: int) -> tuple[int, int] | None:
    """The [lo, hi] an int8 RELU / RELU6 applies (None: not a pure clamp)."""
    op = g.ops[op_index]
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    if x.dtype != "INT8" or y.dtype != "INT8" or x.scale != y.scale or x.zp != y.zp:
        return None
    if op.name == "RELU":
        return max(-128, y.zp), 127
    if op.name == "RELU6":
        six = quant.tf_round(quant.f32(np.float32(6.0) / np.float32(x.scale)))
        return x.zp, min(127, max(-128, x.zp + six))
    return None


def fusions(g: Graph) -> dict[int, Fusion]:
    """The activations to fold, by operator index."""
    producer = {t: op for op in g.ops for t in op.outputs}
    readers: dict[int, int] = {}
    for op in g.ops:
        for i in op.inputs:
            readers[i] = readers.get(i, 0) + 1
    out: dict[int, Fusion] = {}
    for op in g.ops:
        if op.name not in ("RELU", "RELU6") or ext_reason(g, op) is None:
            continue
        x = op.inputs[0]
        p = producer.get(x)
        clamp = activation_clamp(g, op.index)
        if p is None or clamp is None or p.name not in PRODUCERS or len(p.outputs) != 1 \
                or ext_reason(g, p) is None or readers.get(x) != 1 or x in g.outputs \
                or p.index in {f.producer for f in out.values()}:
            continue
        t = g.t(x)
        act = int(getattr(p.options, "fusedActivationFunction", 0) or 0)
        try:
            lo, hi = quant.activation_range(act, t.scale, t.zp)
        except ValueError:
            continue
        lo, hi = max(lo, clamp[0]), min(hi, clamp[1])
        if lo <= hi:
            out[op.index] = Fusion(op.index, op.name, p.index, lo, hi)
    return out
