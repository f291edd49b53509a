"""Stage 3, check: accept a ``.tflite`` model only if TFLite Micro runs it quantized.

Accepted: full int8 (every activation int8, int32 only for biases/indices; an int8 LSTM's
int16 cell state and float32 "intermediate" placeholders included) and 16x8 (int16
activations, int8 weights, int64/int32 bias: TFLM's EXPERIMENTAL 16x8 scheme), with every
operator in ``ops.TFLM_OPS`` having a kernel for that scheme (``int8`` / ``int16`` flags),
and int8 (or, for 16x8, int16) inputs and outputs, int32 operands (a shape, an index) and
int16 tensors only a boundary QUANTIZE reads or writes -- or a float interface around that core
(``tinydeploy.interface``): a float32 input read only by QUANTIZE, a float32 output written
only by DEQUANTIZE (what TFLiteConverter writes without ``inference_input_type``, and how
MCUNet ships). Anything else raises one
``TinyDeployError`` whose message names the real cause and the fix: ``bad_flatbuffer``
(unreadable/truncated), ``model_rejected`` (float, hybrid/dynamic-range, uint8, float I/O
into or out of any other operator, int16 I/O without int16 activations, int64 I/O) or
``unsupported_op`` (a custom op, by name, or an operator TFLM lacks for the scheme).
"""

from __future__ import annotations

from pathlib import Path

from .errors import TinyDeployError
from .facts import ModelFacts, TensorFacts, load, tensor_name
from .interface import float_boundaries
from .ops import TFLM_OPS
from .tflm_py import schema

_TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}

RUNTIME = "TensorFlow Lite Micro"
REQUANTIZE_FIX = ("re-quantize to full int8 with a representative dataset: "
                  "`tinydeploy quantize MODEL.keras --data DATA.npz --out DIR`")
INT8_IO_FIX = ("convert with inference_input_type=tf.int8 and "
               "inference_output_type=tf.int8, e.g. `tinydeploy quantize`")


def _type_name(code: int) -> str:
    return _TYPE_NAMES.get(code, f"TYPE_{code}")


def _tensor_kinds(facts: ModelFacts, boundary: set[int]
                  ) -> tuple[set[str], set[str], str | None]:
    """(activation dtypes, constant dtypes, name of the first float activation); LSTM
    placeholders, state tensors and float boundary tensors (``boundary``) are not
    activations (facts.tensor_kinds)."""
    model = facts.model
    assert model is not None
    skip = set(facts.placeholders) | {t.name for t in facts.variables}
    first_float: str | None = None
    for i, t in enumerate(model.subgraphs[0].tensors or []):
        if t.type == schema.TensorType.FLOAT32 and tensor_name(t) not in skip \
                and i not in boundary and not t.isVariable and first_float is None:
            buffers = model.buffers or []
            buf = buffers[t.buffer] if 0 <= t.buffer < len(buffers) else None
            if buf is None or not ((buf.data is not None and len(buf.data) > 0) or buf.size):
                first_float = tensor_name(t)
    return set(facts.activation_dtypes), set(facts.constant_dtypes), first_float


def _first_float_op(facts: ModelFacts, boundary_ops: set[int]) -> str | None:
    """The first operator other than a float boundary op reading or writing a float32
    tensor (DEQUANTIZE into a float tensor inside the graph included)."""
    assert facts.model is not None
    sub = facts.model.subgraphs[0]
    tensors = sub.tensors or []
    for k, (op, name) in enumerate(zip(sub.operators or [], facts.op_sequence, strict=False)):
        if k in boundary_ops:
            continue
        used = [int(i) for i in [*(op.inputs if op.inputs is not None else []),
                                 *(op.outputs if op.outputs is not None else [])] if i >= 0]
        if any(tensors[i].type == schema.TensorType.FLOAT32 for i in used):
            return name
    return None


def _reject(path: str, problem: str, fix: str = REQUANTIZE_FIX) -> TinyDeployError:
    return TinyDeployError("model_rejected", path=path, problem=problem, fix=fix)


IO_DTYPES = {"int8": ("INT8",), "16x8": ("INT8", "INT16")}
INT16_FIX = ("convert with supported_ops=[tf.lite.OpsSet."
             "EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8] for 16x8, or to full "
             "int8 with `tinydeploy quantize`")


# quantized kernels that never write an int32 tensor in TFLM
NO_INT32_OUTPUT = frozenset({"SOFTMAX", "LOGISTIC", "TANH", "CONV_2D", "DEPTHWISE_CONV_2D",
                             "AVERAGE_POOL_2D", "MAX_POOL_2D", "TRANSPOSE_CONV", "HARD_SWISH",
                             "LEAKY_RELU", "RELU", "RELU6"})


def _writers(facts: ModelFacts) -> dict[int, str]:
    """Tensor index -> name of the operator writing it."""
    assert facts.model is not None
    return {int(i): name for op, name in zip(facts.model.subgraphs[0].operators or [],
                                             facts.op_sequence, strict=False)
            for i in (op.outputs if op.outputs is not None else [])}


def _check_io(path: str, io: list[tuple[str, TensorFacts]], scheme: str,
              requant: set[int] | frozenset[int] = frozenset(),
              writers: dict[int, str] | None = None) -> None:
    """Reject the first input or output whose dtype the scheme's TFLM kernels do not take.
    int32 (a shape operand, an index, a requantized int32 tensor) is taken as it is unless
    an operator of ``NO_INT32_OUTPUT`` writes it; ``requant``: int16 tensors only QUANTIZE
    reads or writes (int8 <-> int16 at the boundary of an int8 model)."""
    for role, t in io:
        op = (writers or {}).get(t.index, "")
        if t.dtype == "INT32" and op in NO_INT32_OUTPUT:
            raise _reject(path, f"{role} '{t.name}' is int32 but TFLM's {op} writes int8 "
                                "or int16", "convert with int8 I/O (e.g. `tinydeploy "
                                "quantize`); compute an index on the host")
        if t.dtype in IO_DTYPES[scheme] or t.dtype == "INT32" or t.index in requant:
            continue
        if t.dtype == "INT16":
            raise _reject(path, f"{role} '{t.name}' is int16 but the model's activations are "
                                "int8 (no int16 activations): TFLM needs 16x8 quantization "
                                "for int16 I/O", INT16_FIX)
        if t.dtype == "INT64":
            raise _reject(path, f"{role} '{t.name}' is int64; tinydeploy carries int8, "
                                "int16, int32 and float32 inputs and outputs",
                          "cast the index or shape to int32 in the model (tf.cast) or "
                          "compute it on the host")
        if t.dtype == "FLOAT32":
            via = "read by another operator than one QUANTIZE" if role == "input" \
                else "not written by a DEQUANTIZE"
            raise _reject(path, f"{role} '{t.name}' is FLOAT32 and {via}; a float "
                                "interface is accepted only as QUANTIZE of a float input "
                                "and DEQUANTIZE into a float output around a quantized "
                                "core", INT8_IO_FIX)
        raise _reject(path, f"{role} '{t.name}' is {t.dtype}; tinydeploy needs int8 "
                            "inputs and outputs", INT8_IO_FIX)


def _check_ops(path: str, facts: ModelFacts, scheme: str) -> None:
    for name in dict.fromkeys(facts.op_sequence):
        if name.startswith("CUSTOM:"):
            raise TinyDeployError(
                "unsupported_op", path=path, op=f"custom operator '{name[7:]}'",
                runtime=RUNTIME,
                fix="custom ops need your own TFLM kernel: rebuild without it (e.g. "
                    "converter.allow_custom_ops=False) or register the kernel yourself")
        info = TFLM_OPS.get(name)
        if info is None:
            raise TinyDeployError(
                "unsupported_op", path=path, op=name, runtime=RUNTIME,
                fix="replace the layer that produces it with TFLM-supported layers "
                    "(list: tinydeploy/ops.py TFLM_OPS)")
        if scheme == "16x8" and not info.int16:
            raise TinyDeployError(
                "unsupported_op", path=path, op=f"{name} (in int16, 16x8)", runtime=RUNTIME,
                fix=f"TFLM has no int16 {name} kernel: quantize to full int8 instead "
                    "(`tinydeploy quantize`) or replace that layer")
        if not info.int8:
            raise TinyDeployError(
                "unsupported_op", path=path, op=f"{name} (in int8)", runtime=RUNTIME,
                fix=f"TFLM has no int8 {name} kernel: replace that layer or compute it "
                    "outside the model")


def check(model: str | Path | bytes | ModelFacts) -> ModelFacts:
    """Return the model's facts if TFLM runs it quantized (full int8, or 16x8: int16
    activations with int8 weights; int8 LSTMs with their int16 cell state included).

    Args:
        model: ``.tflite`` path, bytes or :class:`ModelFacts`.

    Returns:
        The model's :class:`ModelFacts`.

    Raises:
        TinyDeployError: ``file_not_found`` / ``bad_flatbuffer`` (exit 2/3), or
            ``model_rejected`` / ``unsupported_op`` (exit 3) naming the cause: float, hybrid,
            uint8 models, float inputs/outputs, custom ops and operators TFLite Micro lacks;
            ``model_rejected`` "inconsistent model" for a file whose shapes, buffers,
            quantization or tensor tables contradict each other (corrupted or hand-edited:
            :mod:`tinydeploy.cruntime.consistency`).
    """
    facts = load(model)  # file_not_found / bad_flatbuffer
    path = facts.path
    bounds = float_boundaries(facts)
    activations, constants, first_float = _tensor_kinds(facts, {b.outer.index for b in bounds})
    # a float boundary tensor is checked as the quantized tensor behind its op
    inner = {b.outer.index: b.inner for b in bounds}
    io = [("input", inner.get(t.index, t)) for t in facts.inputs] \
        + [("output", inner.get(t.index, t)) for t in facts.outputs]
    io_types = {t.dtype for _, t in io}

    if not facts.op_sequence:
        raise _reject(path, "the model has no operators",
                      "export a model with at least one layer")
    custom = next((n for n in facts.op_sequence if n.startswith("CUSTOM:")), None)
    if custom is not None:
        _check_ops(path, facts, "int8")  # names the custom op
    if "UINT8" in io_types or "UINT8" in activations:
        where = next((f"{role} '{t.name}'" for role, t in io if t.dtype == "UINT8"),
                     "its activations")
        raise _reject(path, f"uint8 model ({where} is uint8); tinydeploy needs int8",
                      INT8_IO_FIX)
    if first_float is not None or "FLOAT32" in io_types:
        int8_weights = "INT8" in constants
        int8_acts = "INT8" in activations or "INT16" in activations
        if int8_weights and not int8_acts:
            raise _reject(path, "hybrid (dynamic-range) model: int8 weights with float32 "
                                "activations, i.e. quantized without a representative dataset")
        if not int8_weights and not int8_acts:
            kind = "float16-weight" if "FLOAT16" in constants else "float32"
            raise _reject(path, f"{kind} model: it is not quantized")
        _check_io(path, io, "16x8" if "INT16" in activations else "int8",
                  _requant_io(facts, io))
        op = _first_float_op(facts, {b.op for b in bounds})
        if op is not None:
            raise _reject(path, f"partially quantized: operator {op} runs in float32 (the "
                                "converter found no int8 kernel for it)",
                          f"replace the layer that produces {op} with layers that have int8 "
                          "kernels")
        raise _reject(path, f"partially quantized: tensor '{first_float}' is float32",
                      "convert with supported_ops=[tf.lite.OpsSet.TFLITE_BUILTINS_INT8] so "
                      "every op is int8 (replace layers that fail to convert)")
    # int16 I/O tensors count as activations: 16x8 needs int16 beyond the inputs, or int16
    # data I/O (not int32 operands, not int16 only QUANTIZE reads or writes)
    io_names = {t.index for _, t in io}
    inner16 = _inner_int16(facts, io_names)
    requant = _requant_io(facts, io)
    data_io = [t for _, t in io if t.dtype != "INT32" and t.index not in requant]
    scheme = "16x8" if inner16 or ("INT16" in activations and data_io and
                                   all(t.dtype == "INT16" for t in data_io)) else "int8"
    _check_io(path, io, scheme, requant, _writers(facts))
    for role, t in io:  # int32/int16 operands (shapes, indices) may be plain integers
        if t.dtype == "INT8" and (t.scale is None or t.zero_point is None):
            raise _reject(path, f"{role} '{t.name}' has no quantization parameters")
    _check_ops(path, facts, scheme)
    from .cruntime.graph import consistent_graph

    consistent_graph(facts)  # shapes, buffers, quantization agree (a corrupted file does not)
    return facts


def _requant_io(facts: ModelFacts, io: list[tuple[str, TensorFacts]]) -> set[int]:
    """The int16 I/O tensors that only QUANTIZE ops read or write (a requantization at the
    model's boundary, e.g. int16 -> int8 core -> int16, or int16 -> int32)."""
    assert facts.model is not None
    ops = list(zip(facts.model.subgraphs[0].operators or [], facts.op_sequence, strict=False))
    found = set()
    for _, t in io:
        if t.dtype != "INT16":
            continue
        users = [name for op, name in ops
                 if t.index in [int(i) for i in (op.inputs if op.inputs is not None else [])]
                 or t.index in [int(i) for i in (op.outputs if op.outputs is not None
                                                 else [])]]
        if users and all(name == "QUANTIZE" for name in users):
            found.add(t.index)
    return found


def _inner_int16(facts: ModelFacts, io: set[int]) -> bool:
    """True if an int16 activation exists that is not a model input or output."""
    assert facts.model is not None
    sub = facts.model.subgraphs[0]
    skip = set(facts.placeholders)
    buffers = facts.model.buffers or []
    for i, t in enumerate(sub.tensors or []):
        if i in io or t.isVariable or t.type != schema.TensorType.INT16 \
                or tensor_name(t) in skip:
            continue
        buf = buffers[t.buffer] if 0 <= t.buffer < len(buffers) else None
        if buf is None or not ((buf.data is not None and len(buf.data) > 0) or buf.size):
            return True
    return False
