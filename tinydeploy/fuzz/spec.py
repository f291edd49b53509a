"""A small model description (tensors, operators) and its ``.tflite`` flatbuffer writer.

The fuzzer builds models as :class:`GraphSpec` (no Keras, no converter) and writes them with
the flatbuffer schema module shipped in ``tflite-micro`` (the one :mod:`tinydeploy.facts`
reads with): thousands of models per minute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import flatbuffers
import numpy as np

from ..tflm_py import schema

__all__ = ["DTYPES", "GraphSpec", "OpSpec", "TensorSpec", "to_tflite"]

# schema TensorType and numpy dtype per dtype name
DTYPES: dict[str, tuple[int, Any]] = {
    "FLOAT32": (schema.TensorType.FLOAT32, np.float32),
    "INT8": (schema.TensorType.INT8, np.int8),
    "INT16": (schema.TensorType.INT16, np.int16),
    "INT32": (schema.TensorType.INT32, np.int32),
    "INT64": (schema.TensorType.INT64, np.int64),
}


@dataclass
class TensorSpec:
    """One tensor: ``data`` makes it a constant, ``scales``/``zero_points`` quantize it
    (several scales: per channel along ``qdim``)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scales: list[float] | None = None
    zero_points: list[int] | None = None
    qdim: int = 0
    data: np.ndarray | None = None
    variable: bool = False

    @property
    def scale(self) -> float:
        return float(self.scales[0]) if self.scales else 0.0

    @property
    def zp(self) -> int:
        return int(self.zero_points[0]) if self.zero_points else 0

    @property
    def numpy_dtype(self) -> Any:
        return DTYPES[self.dtype][1]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class OpSpec:
    """One operator: builtin name, tensor indices (-1: optional input absent), and its
    builtin options as a schema ``...OptionsT`` object with its union type name."""

    name: str
    inputs: list[int]
    outputs: list[int]
    options: Any = None
    options_type: str = "NONE"
    intermediates: list[int] = field(default_factory=list)


@dataclass
class GraphSpec:
    """A one-subgraph model."""

    tensors: list[TensorSpec] = field(default_factory=list)
    ops: list[OpSpec] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)

    def add(self, t: TensorSpec) -> int:
        """Append a tensor; return its index."""
        self.tensors.append(t)
        return len(self.tensors) - 1

    def t(self, i: int) -> TensorSpec:
        return self.tensors[i]


def _quant(t: TensorSpec) -> schema.QuantizationParametersT | None:
    if t.scales is None:
        return None
    q = schema.QuantizationParametersT()
    q.scale = [float(s) for s in t.scales]
    q.zeroPoint = [int(z) for z in (t.zero_points or [0] * len(t.scales))]
    q.quantizedDimension = int(t.qdim)
    return q


def to_tflite(g: GraphSpec, description: str = "tinydeploy fuzz") -> bytes:
    """The ``.tflite`` bytes of ``g`` (schema version 3, buffer 0 empty)."""
    model = schema.ModelT()
    model.version = 3
    model.description = description
    model.buffers = [schema.BufferT()]
    sub = schema.SubGraphT()
    sub.name = "main"
    sub.tensors = []
    for t in g.tensors:
        tt = schema.TensorT()
        tt.name = t.name
        tt.shape = np.asarray(t.shape, dtype=np.int32)
        tt.type = DTYPES[t.dtype][0]
        tt.quantization = _quant(t)
        tt.isVariable = bool(t.variable)
        buf = schema.BufferT()
        if t.data is not None:
            raw = np.ascontiguousarray(np.asarray(t.data, dtype=t.numpy_dtype)).astype(
                np.dtype(t.numpy_dtype).newbyteorder("<"))
            buf.data = np.frombuffer(raw.tobytes(), dtype=np.uint8)
        model.buffers.append(buf)
        tt.buffer = len(model.buffers) - 1
        sub.tensors.append(tt)
    codes: dict[str, int] = {}
    model.operatorCodes = []
    sub.operators = []
    for op in g.ops:
        if op.name not in codes:
            code = schema.OperatorCodeT()
            code.builtinCode = getattr(schema.BuiltinOperator, op.name)
            code.deprecatedBuiltinCode = min(code.builtinCode, 127)
            code.version = 1
            codes[op.name] = len(model.operatorCodes)
            model.operatorCodes.append(code)
        o = schema.OperatorT()
        o.opcodeIndex = codes[op.name]
        o.inputs = np.asarray(op.inputs, dtype=np.int32)
        o.outputs = np.asarray(op.outputs, dtype=np.int32)
        if op.intermediates:
            o.intermediates = np.asarray(op.intermediates, dtype=np.int32)
        if op.options is not None:
            o.builtinOptionsType = getattr(schema.BuiltinOptions, op.options_type)
            o.builtinOptions = op.options
        sub.operators.append(o)
    sub.inputs = np.asarray(g.inputs, dtype=np.int32)
    sub.outputs = np.asarray(g.outputs, dtype=np.int32)
    model.subgraphs = [sub]
    builder = flatbuffers.Builder(1024 + sum(t.size * 8 for t in g.tensors
                                             if t.data is not None))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
