"""A small graph IR read from ``ModelFacts.model`` (the flatbuffer object tree).

Only what code generation needs: tensors (shape, dtype, quantization, constant data) and
operators in execution order. ``read_graph`` refuses, before anything is written, a model
the C runtime cannot run bit-exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import TinyDeployError
from ..facts import ModelFacts, op_name, tensor_name
from ..ops import C_RUNTIME_OPS
from .consistency import check_buffer, validate, validate_operators, validate_tables
from .support import ext_reason

_TYPES = {9: ("INT8", np.int8), 2: ("INT32", np.int32), 0: ("FLOAT32", np.float32),
          3: ("UINT8", np.uint8), 7: ("INT16", np.int16), 4: ("INT64", np.int64),
          6: ("BOOL", np.bool_)}

RUNTIME_NAME = "the C runtime (--runtime c)"
FIX_TFLM = "use the TFLM runtime (default)"


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scales: list[float] = field(default_factory=list)
    zero_points: list[int] = field(default_factory=list)
    data: np.ndarray | None = None  # constant tensors only
    sparse: bool = False
    variable: bool = False  # state tensor (LSTM hidden/cell state): lives across invokes

    @property
    def scale(self) -> float:
        return self.scales[0] if self.scales else 0.0

    @property
    def zp(self) -> int:
        return self.zero_points[0] if self.zero_points else 0

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def is_const(self) -> bool:
        return self.data is not None and not self.variable

    @property
    def itemsize(self) -> int:
        return {"INT16": 2, "INT32": 4, "FLOAT32": 4, "INT64": 8}.get(self.dtype, 1)

    @property
    def nbytes(self) -> int:
        return self.size * self.itemsize


@dataclass
class Op:
    index: int
    name: str
    inputs: list[int]  # -1 = optional input absent
    outputs: list[int]
    options: Any


@dataclass
class Graph:
    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]
    path: str = "<model>"
    # tensor -> tensor whose bytes it is, seen in another layout (transpose.py's views)
    views: dict[int, int] = field(default_factory=dict)

    def t(self, index: int) -> Tensor:
        return self.tensors[index]


def _tensor(model: Any, sub: Any, i: int, path: str) -> Tensor:
    t = sub.tensors[i]
    dtype, np_type = _TYPES.get(int(t.type), (f"TYPE_{t.type}", None))
    q = t.quantization
    scales = [float(s) for s in q.scale] if q is not None and q.scale is not None else []
    zps = [int(z) for z in q.zeroPoint] if q is not None and q.zeroPoint is not None else []
    shape = tuple(int(d) for d in t.shape) if t.shape is not None else ()
    data = None
    buf = model.buffers[t.buffer] if model.buffers and t.buffer < len(model.buffers) else None
    if buf is not None and buf.data is not None and len(buf.data) > 0 and np_type is not None:
        raw = np.asarray(buf.data, dtype=np.uint8).tobytes()
        check_buffer(path, i, tensor_name(t), shape, dtype, np.dtype(np_type).itemsize,
                     len(raw))  # shape x dtype size bytes, before the data is shaped
        data = np.frombuffer(raw, dtype=np.dtype(np_type).newbyteorder("<")).astype(np_type)
        if shape:
            data = data.reshape(shape)
    return Tensor(i, tensor_name(t), shape, dtype, scales, zps, data, t.sparsity is not None,
                  bool(t.isVariable))


def read_graph(facts: ModelFacts) -> Graph:
    """Build the IR; raise ``TinyDeployError`` for an inconsistent model (a corrupted file:
    ``consistency.py``) and for anything outside the C runtime."""
    if facts.subgraph_count != 1:
        raise TinyDeployError("model_rejected", path=facts.path,
                              problem=f"{facts.subgraph_count} subgraphs; the C runtime runs one",
                              fix=FIX_TFLM)
    g = _graph(facts)
    validate_tables(g)  # what naming the operators' dtypes needs
    _check(g)  # operators the C runtime lacks: refused by name
    validate_operators(g)
    return g


def consistent_graph(facts: ModelFacts) -> Graph:
    """The IR of the main subgraph, proven consistent (``consistency.validate``: shapes,
    buffers, quantization and tables agree); ``model_rejected`` if not."""
    g = _graph(facts)
    validate(g)
    return g


def _graph(facts: ModelFacts) -> Graph:
    model = facts.model
    path = facts.path
    if model is None:
        raise TinyDeployError("bad_flatbuffer", path=path, problem="no parsed model")
    sub = model.subgraphs[0]
    names = [op_name(model.operatorCodes[op.opcodeIndex]) for op in (sub.operators or [])]
    tensors = [_tensor(model, sub, i, path) for i in range(len(sub.tensors or []))]
    ops = [Op(k, name, _ints(op.inputs), _ints(op.outputs), op.builtinOptions)
           for k, (op, name) in enumerate(zip(sub.operators or [], names, strict=True))]
    return Graph(tensors, ops, _ints(sub.inputs), _ints(sub.outputs), path)


def _ints(values: Any) -> list[int]:
    return [] if values is None else [int(v) for v in values]


def _reject(g: Graph, problem: str) -> TinyDeployError:
    return TinyDeployError("model_rejected", path=g.path, problem=problem,
                           fix=FIX_TFLM + ", or re-quantize with int8 input and output")


def float_boundary(g: Graph, op: Op) -> bool:
    """QUANTIZE of the float graph input, or DEQUANTIZE into the float graph output."""
    if op.name == "QUANTIZE":
        return g.t(op.inputs[0]).dtype == "FLOAT32" and op.inputs[0] in g.inputs
    if op.name == "DEQUANTIZE":
        return g.t(op.outputs[0]).dtype == "FLOAT32" and op.outputs[0] in g.outputs
    return False


IO_DTYPES = ("INT8", "INT16")
INT8_OPS = C_RUNTIME_OPS  # the original int8 kernels (emit.py)


def _check(g: Graph) -> None:
    if not g.inputs or not g.outputs:
        raise _reject(g, f"{len(g.inputs)} inputs and {len(g.outputs)} outputs")
    if set(g.inputs) & set(g.outputs):
        raise _reject(g, "an input tensor is also an output tensor")
    if len(set(g.outputs)) != len(g.outputs) or len(set(g.inputs)) != len(g.inputs):
        raise _reject(g, "a tensor is listed twice among the model inputs or outputs")
    if not g.ops:
        raise _reject(g, "the model has no operators")
    if any(t.sparse for t in g.tensors):
        raise _reject(g, "sparse (compressed) constant tensors")
    for i in g.inputs + g.outputs:  # float I/O only through QUANTIZE / DEQUANTIZE
        t = g.t(i)
        users = [op for op in g.ops if i in op.inputs or i in op.outputs]
        if t.dtype == "FLOAT32" and users and all(float_boundary(g, op) for op in users):
            continue
        if t.dtype == "INT32":  # a shape operand, an index, a requantized int32 tensor
            continue
        if t.dtype not in IO_DTYPES or not t.scales:
            raise _reject(g, f"model I/O tensor '{t.name}' is {t.dtype}; the C runtime takes "
                             "int8 or int16 (quantized) and int32 input and output (float "
                             "only into QUANTIZE / out of DEQUANTIZE)")
    for op in g.ops:
        if float_boundary(g, op):
            inner = g.t(op.outputs[0] if op.name == "QUANTIZE" else op.inputs[0])
            if inner.dtype not in ("INT8", "INT16") or len(inner.scales) != 1:
                raise _reject(g, f"{op.name} '{inner.name}' is {inner.dtype}; need int8 or "
                                 "int16 with one scale")
            continue
        reason = ext_reason(g, op)
        if reason is None:
            continue  # an extension kernel (emit_ext.py) runs it
        data_inputs = op.inputs[:1] if op.name not in ("ADD", "MUL", "CONCATENATION") \
            else op.inputs
        int8 = all(g.t(i).dtype == "INT8" for i in [*op.outputs, *data_inputs] if i >= 0)
        if op.name not in INT8_OPS or not int8:  # the op and the dtypes it needs
            raise TinyDeployError("unsupported_op", path=g.path, op=f"{op.name} ({reason})",
                                  runtime=RUNTIME_NAME, fix=FIX_TFLM)
