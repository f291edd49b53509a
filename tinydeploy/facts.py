"""Model facts: one small description of a ``.tflite`` model that every later stage takes.

Read with the flatbuffer schema that ships in the ``tflite-micro`` package (never by
hand-parsing bytes). ``ModelFacts.to_dict()`` is what ``tinydeploy inspect --json`` prints.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import TinyDeployError
from .tflm_py import schema

_TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_NUMPY_DTYPES = {"INT8": "int8", "UINT8": "uint8", "INT16": "int16", "INT32": "int32",
                 "FLOAT32": "float32", "INT64": "int64", "BOOL": "bool", "FLOAT16": "float16"}


@dataclass(frozen=True)
class TensorFacts:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str  # schema TensorType name: INT8, FLOAT32, ...
    scale: float | None = None  # first (or only) scale
    zero_point: int | None = None
    per_channel: bool = False

    @property
    def numpy_dtype(self) -> str:
        return _NUMPY_DTYPES.get(self.dtype, self.dtype.lower())

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One sample's shape: without the leading batch axis of 1 when there is one (else
        the whole tensor: rank 0, or a rank-1+ tensor without batch axis, e.g. a [64]
        input or a [4] shape operand)."""
        return self.shape[1:] if self.shape and self.shape[0] == 1 else self.shape

    @property
    def elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        size = {"INT8": 1, "UINT8": 1, "BOOL": 1, "INT16": 2, "FLOAT16": 2, "INT32": 4,
                "FLOAT32": 4, "INT64": 8}.get(self.dtype, 4)
        return self.elements * size


@dataclass(frozen=True)
class OpFacts:
    name: str  # builtin name, or "CUSTOM:<code>"
    version: int
    count: int


@dataclass
class ModelFacts:
    path: str
    sha256: str
    size_bytes: int
    schema_version: int
    description: str
    ops: list[OpFacts]  # distinct operators in order of first use
    op_sequence: list[str]  # every operator of the main subgraph in execution order
    inputs: list[TensorFacts]
    outputs: list[TensorFacts]
    tensor_count: int
    weight_bytes: int
    subgraph_count: int
    data: bytes = field(repr=False, default=b"")
    model: schema.ModelT | None = field(repr=False, default=None, compare=False)
    # quantization facts (see ``tensor_kinds``): "int8", "16x8", "float", "hybrid", "mixed"
    quantization: str = "int8"
    activation_dtypes: dict[str, int] = field(default_factory=dict)  # dtype -> tensors
    constant_dtypes: dict[str, int] = field(default_factory=dict)
    variables: list[TensorFacts] = field(default_factory=list)  # state tensors (LSTM)
    placeholders: list[str] = field(default_factory=list)  # LSTM float "intermediates"
    tensor_dtypes: list[str] = field(default_factory=list)  # every tensor's dtype, by index
    # "quantized", or "float": float32 inputs/outputs only behind boundary QUANTIZE /
    # DEQUANTIZE ops (tinydeploy.interface); those tensors are not activations
    interface: str = "quantized"
    # the float boundary ops `--io int8` removed from the model this one was made from
    # (tinydeploy.interface.strip_float_io), one line each; [] for a model as loaded
    stripped_io: list[str] = field(default_factory=list)

    @property
    def stateful(self) -> bool:
        """True if the model keeps state between invocations (variable tensors)."""
        return bool(self.variables)

    # --- construction -----------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path) -> ModelFacts:
        p = Path(path)
        if not p.is_file():
            raise TinyDeployError("file_not_found", what="model", path=p)
        return cls.from_bytes(p.read_bytes(), str(p))

    @classmethod
    def from_bytes(cls, data: bytes, path: str = "<bytes>") -> ModelFacts:
        model = read_model(data, path)
        try:
            return cls._from_model(model, data, path)
        except (IndexError, TypeError, ValueError) as exc:  # e.g. an index out of range
            raise TinyDeployError("bad_flatbuffer", path=path,
                                  problem=f"corrupt ({type(exc).__name__})") from exc

    @classmethod
    def _from_model(cls, model: schema.ModelT, data: bytes, path: str) -> ModelFacts:
        _check_indices(model)  # later stages index tensors, codes and buffers freely
        sub = model.subgraphs[0]
        tensors = sub.tensors or []
        codes = model.operatorCodes or []
        op_names = [op_name(codes[op.opcodeIndex]) for op in (sub.operators or [])]
        counts: dict[str, int] = {}
        versions: dict[str, int] = {}
        for op, name in zip(sub.operators or [], op_names, strict=True):
            counts[name] = counts.get(name, 0) + 1
            versions[name] = max(versions.get(name, 1), codes[op.opcodeIndex].version or 1)
        const_buffers = {int(t.buffer) for s in model.subgraphs for t in (s.tensors or [])}
        weight_bytes = sum(
            len(b.data) for i, b in enumerate(model.buffers or [])
            if i in const_buffers and b.data is not None
        )
        desc = model.description
        io = (_ints(sub.inputs), _ints(sub.outputs))
        bounds = boundary_pairs(model, op_names, *io)
        kinds = tensor_kinds(model, {outer for _, _, _, outer, _ in bounds})
        return cls(
            path=path,
            sha256=hashlib.sha256(data).hexdigest(),
            size_bytes=len(data),
            schema_version=int(model.version),
            description=_text(desc),
            ops=[OpFacts(n, versions[n], counts[n]) for n in counts],
            op_sequence=op_names,
            inputs=[tensor_facts(tensors, int(i)) for i in io[0]],
            outputs=[tensor_facts(tensors, int(i)) for i in io[1]],
            tensor_count=len(tensors),
            weight_bytes=weight_bytes,
            subgraph_count=len(model.subgraphs),
            data=data,
            model=model,
            quantization=kinds["quantization"],
            activation_dtypes=kinds["activations"],
            constant_dtypes=kinds["constants"],
            variables=[tensor_facts(tensors, i) for i in kinds["variables"]],
            placeholders=[tensor_name(tensors[i]) for i in kinds["placeholders"]],
            tensor_dtypes=[_TYPE_NAMES.get(t.type, f"TYPE_{t.type}") for t in tensors],
            interface="float" if bounds else "quantized",
        )

    # --- views ------------------------------------------------------------------------
    @property
    def op_names(self) -> list[str]:
        return [o.name for o in self.ops]

    @property
    def name(self) -> str:
        return Path(self.path).stem

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("data", "model")}
        d["ops"] = [asdict(o) for o in self.ops]
        d["inputs"] = [asdict(t) for t in self.inputs]
        d["outputs"] = [asdict(t) for t in self.outputs]
        d["variables"] = [asdict(t) for t in self.variables]
        d["op_names"] = self.op_names
        d["stateful"] = self.stateful
        return d


def _text(value: Any) -> str:
    """A flatbuffer string (bytes, maybe not valid UTF-8) as ``str``."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def _is_constant(model: schema.ModelT, t: schema.TensorT) -> bool:
    buffers = model.buffers or []
    buf = buffers[t.buffer] if 0 <= t.buffer < len(buffers) else None
    return buf is not None and ((buf.data is not None and len(buf.data) > 0) or bool(buf.size))


def boundary_pairs(model: schema.ModelT, op_names: list[str], inputs: list[int],
                   outputs: list[int]) -> list[tuple[str, int, int, int, int]]:
    """Float boundary ops of the main subgraph as ``(role, position, op, outer, inner)``
    (tensor indices; inputs first): a float32 model input read only by one QUANTIZE into a
    quantized int8/int16 per-tensor tensor, a float32 model output written by DEQUANTIZE
    of such a tensor and read by no operator (``tinydeploy.interface``)."""
    sub = model.subgraphs[0]
    tensors = sub.tensors or []
    ops = list(sub.operators or [])
    readers: dict[int, list[int]] = {}
    writer: dict[int, int] = {}
    for k, op in enumerate(ops):
        for i in _ints(op.inputs):
            readers.setdefault(i, []).append(k)
        for i in _ints(op.outputs):
            writer[i] = k

    def quantized(i: int) -> bool:
        t = tensors[i]
        q = t.quantization
        scales = [] if q is None or q.scale is None else list(q.scale)
        zps = [] if q is None or q.zeroPoint is None else list(q.zeroPoint)
        return t.type in (schema.TensorType.INT8, schema.TensorType.INT16) \
            and len(scales) == 1 and len(zps) == 1 and not t.isVariable

    found: list[tuple[str, int, int, int, int]] = []
    for pos, i in enumerate(inputs):
        users = readers.get(i, [])
        if tensors[i].type != schema.TensorType.FLOAT32 or i in outputs or len(users) != 1 \
                or op_names[users[0]] != "QUANTIZE":
            continue
        inner = _ints(ops[users[0]].outputs)[0]
        if quantized(inner):
            found.append(("input", pos, users[0], i, inner))
    for pos, i in enumerate(outputs):
        k = writer.get(i)
        if tensors[i].type != schema.TensorType.FLOAT32 or k is None \
                or op_names[k] != "DEQUANTIZE" or readers.get(i):
            continue
        inner = _ints(ops[k].inputs)[0]
        if quantized(inner):
            found.append(("output", pos, k, i, inner))
    return found


def tensor_kinds(model: schema.ModelT, skip: set[int] | None = None) -> dict[str, Any]:
    """Dtype census of the main subgraph, the quantization scheme and special tensors.
    ``skip``: tensors that are not counted at all (the float32 boundary tensors of a
    float interface, ``boundary_pairs``).

    * placeholders: float32 tensors without data listed as an operator's ``intermediates``
      (a quantized LSTM's unused "intermediate" slots) - not activations.
    * variables: state tensors (``isVariable``, e.g. LSTM hidden/cell state): int16 cell
      state belongs to an int8 LSTM and does not make a model 16x8.
    * quantization: "16x8" if an activation is int16, "int8" if they are int8, "float" if
      float32 without int8 weights, "hybrid" if float32 activations with int8 weights,
      "mixed" for float32 next to int8/int16 activations.
    """
    sub = model.subgraphs[0]
    tensors = sub.tensors or []
    placeholders: set[int] = set()
    for op in sub.operators or []:
        for i in _ints(op.intermediates):
            if 0 <= i < len(tensors):
                t = tensors[i]
                empty = t.shape is None or len(t.shape) == 0 or 0 in list(t.shape)
                if not _is_constant(model, t) and (empty or t.type == schema.TensorType.FLOAT32):
                    placeholders.add(i)
    activations: dict[str, int] = {}
    constants: dict[str, int] = {}
    variables: list[int] = []
    for i, t in enumerate(tensors):
        if i in placeholders or (skip is not None and i in skip):
            continue
        dtype = _TYPE_NAMES.get(t.type, f"TYPE_{t.type}")
        if t.isVariable:
            variables.append(i)
            continue
        table = constants if _is_constant(model, t) else activations
        table[dtype] = table.get(dtype, 0) + 1
    has_float = "FLOAT32" in activations
    if "INT16" in activations and not has_float:
        scheme = "16x8"
    elif has_float and ("INT8" in activations or "INT16" in activations):
        scheme = "mixed"
    elif has_float:
        scheme = "hybrid" if "INT8" in constants else "float"
    else:
        scheme = "int8"
    return {"quantization": scheme, "activations": activations, "constants": constants,
            "variables": variables, "placeholders": sorted(placeholders)}


def tensor_name(t: schema.TensorT) -> str:
    return _text(t.name)


def _check_indices(model: schema.ModelT) -> None:
    """Raise IndexError if an operator, tensor or buffer index points outside its table."""
    n_codes, n_buffers = len(model.operatorCodes or []), len(model.buffers or [])
    for sub in model.subgraphs:
        n_tensors = len(sub.tensors or [])
        for t in sub.tensors or []:
            if not 0 <= t.buffer < max(n_buffers, 1):
                raise IndexError("tensor buffer")
        if any(not 0 <= i < n_tensors for i in [*_ints(sub.inputs), *_ints(sub.outputs)]):
            raise IndexError("subgraph input/output tensor")
        for op in sub.operators or []:
            if not 0 <= op.opcodeIndex < n_codes:
                raise IndexError("operator code")
            if any(not -1 <= i < n_tensors for i in _ints(op.inputs) + _ints(op.outputs)):
                raise IndexError("operator tensor")  # -1: an omitted optional input


def _ints(values: Any) -> list[int]:
    return [] if values is None else [int(v) for v in values]


def op_name(code: schema.OperatorCodeT) -> str:
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == schema.BuiltinOperator.CUSTOM:
        custom = code.customCode
        return "CUSTOM:" + _text(custom)
    return _OP_NAMES.get(builtin, f"BUILTIN_{builtin}")


def tensor_facts(tensors: list[schema.TensorT], index: int) -> TensorFacts:
    t = tensors[index]
    q = t.quantization
    scales = list(q.scale) if q is not None and q.scale is not None else []
    zps = list(q.zeroPoint) if q is not None and q.zeroPoint is not None else []
    name = tensor_name(t)
    shape = tuple(int(d) for d in t.shape) if t.shape is not None else ()
    return TensorFacts(
        index=index,
        name=name,
        shape=shape,
        dtype=_TYPE_NAMES.get(t.type, str(t.type)),
        scale=float(scales[0]) if scales else None,
        zero_point=int(zps[0]) if zps else None,
        per_channel=len(scales) > 1,
    )


def read_model(data: bytes, path: str = "<bytes>") -> schema.ModelT:
    """Parse a flatbuffer into ``schema.ModelT``; one clear error for anything unreadable."""
    if len(data) < 8:
        raise TinyDeployError("bad_flatbuffer", path=path, problem=f"only {len(data)} bytes")
    if data[4:8] != b"TFL3":
        raise TinyDeployError("bad_flatbuffer", path=path,
                              problem="no TFL3 file identifier: not a TFLite model")
    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytearray(data), 0))
    except Exception as exc:  # flatbuffers raises IndexError/struct.error on truncation
        raise TinyDeployError("bad_flatbuffer", path=path,
                              problem=f"truncated or corrupt ({type(exc).__name__})") from exc
    if not model.subgraphs:
        raise TinyDeployError("bad_flatbuffer", path=path, problem="no subgraph")
    for buf in model.buffers or []:
        if buf.offset and buf.offset + buf.size > len(data):
            raise TinyDeployError("bad_flatbuffer", path=path, problem="truncated buffer data")
    return model


def load(model: str | Path | bytes | ModelFacts) -> ModelFacts:
    """Accept a path, raw bytes or facts; return facts (the API's one entry point).

    Args:
        model: ``.tflite`` path, its bytes, or :class:`ModelFacts` (returned as is).

    Returns:
        The :class:`ModelFacts` (ops, tensors, sizes, SHA-256); per-layer numbers come
        from :func:`tinydeploy.layers.analyze`.

    Raises:
        TinyDeployError: ``file_not_found`` (exit 2) or ``bad_flatbuffer`` (exit 3).
    """
    if isinstance(model, ModelFacts):
        return model
    if isinstance(model, bytes | bytearray):
        return ModelFacts.from_bytes(bytes(model))
    return ModelFacts.from_file(model)
