"""The model as TFLM's allocator sees it: tensors (size, constness, quantization channels),
operators (inputs, outputs, the integer options buffer sizes depend on), graph inputs and
outputs, and the kernel flavour of the library that will run it.

Second layer of :mod:`tinydeploy.arena` (after :mod:`.library`); the kernel rules of
:mod:`.kernels` and the replay of :mod:`.replay` work on a :class:`Graph`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..facts import ModelFacts, op_name
from .library import REFERENCE

DTYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8, 16: 4, 17: 1}
INT8, INT16 = 9, 7  # schema TensorType codes


@dataclass
class Tensor:
    """One tensor: bytes, constness, quantization channels, shape, dtype."""

    nbytes: int
    const: bool
    channels: int  # quantization scale count (0: not quantized)
    variable: bool = False
    rank: int = 0
    shape: tuple[int, ...] = ()
    dtype: int = 9  # schema TensorType code (9 = INT8)


@dataclass
class Op:
    """One operator: builtin name, tensor indices, integer options."""

    name: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, int] = field(default_factory=dict)
    intermediates: list[int] = field(default_factory=list)


def _options(op: Any) -> dict[str, int]:
    """Integer builtin options a kernel's buffer sizes depend on (strides, padding...)."""
    opts = op.builtinOptions
    out: dict[str, int] = {}
    for key in ("strideW", "strideH", "dilationWFactor", "dilationHFactor", "padding",
                "depthMultiplier", "filterWidth", "filterHeight", "timeMajor"):
        value = getattr(opts, key, None) if opts is not None else None
        if value is not None:
            out[key] = int(value)
    return out


@dataclass
class Graph:
    """What the allocator sees of a model: tensors, operators, graph inputs/outputs."""

    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]
    offline_planned: bool = False
    flavour: str = REFERENCE

    @classmethod
    def from_facts(cls, facts: ModelFacts, flavour: str = REFERENCE) -> Graph:
        model = facts.model
        assert model is not None
        sub = model.subgraphs[0]
        tensors = []
        for t in sub.tensors or []:
            buf = model.buffers[t.buffer] if model.buffers else None
            const = buf is not None and buf.data is not None and len(buf.data) > 0
            n = DTYPE_BYTES.get(int(t.type), 4)
            shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
            for d in shape:
                n *= max(d, 0)
            q = t.quantization
            ch = len(q.scale) if (q is not None and q.scale is not None
                                  and q.zeroPoint is not None and len(q.zeroPoint)) else 0
            tensors.append(Tensor(n, const, ch, bool(t.isVariable), len(shape), shape,
                                  int(t.type)))
        ops = [Op(op_name(model.operatorCodes[o.opcodeIndex]),
                   [int(i) for i in (o.inputs if o.inputs is not None else [])],
                  [int(i) for i in (o.outputs if o.outputs is not None else [])],
                  _options(o),
                  [int(i) for i in (o.intermediates if o.intermediates is not None else [])])
               for o in sub.operators or []]
        offline = any((m.name or b"") in (b"OfflineMemoryAllocation", "OfflineMemoryAllocation")
                      for m in (model.metadata or []))
        return cls(tensors, ops, [int(i) for i in sub.inputs], [int(i) for i in sub.outputs],
                   offline, flavour)

    def tensor(self, op: Op, k: int, outputs: bool = False) -> Tensor | None:
        """Input (or output) ``k`` of ``op``; None when omitted."""
        idx = op.outputs if outputs else op.inputs
        return self.tensors[idx[k]] if k < len(idx) and idx[k] >= 0 else None
