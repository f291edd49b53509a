"""Stage 3, check: accept a ``.tflite`` model only if TFLite Micro runs it in full int8.

Accepted: every operator is in ``ops.TFLM_OPS`` with an int8 kernel, every activation
tensor is int8 (int32 only for biases/indices), and the model's inputs and outputs are int8.
Anything else raises one ``TinyDeployError`` whose message names the problem and the fix:
``bad_flatbuffer`` (unreadable/truncated), ``model_rejected`` (float, hybrid/dynamic-range,
uint8, float I/O, int16 activations) or ``unsupported_op`` (an operator TFLM lacks).
"""

from __future__ import annotations

from pathlib import Path

from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from .errors import TinyDeployError
from .facts import ModelFacts, TensorFacts, load, tensor_name
from .ops import TFLM_OPS

_TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}

RUNTIME = "TensorFlow Lite Micro"
REQUANTIZE_FIX = ("re-quantize to full int8 with a representative dataset: "
                  "`tinydeploy quantize MODEL.keras --data DATA.npz --out DIR`")
INT8_IO_FIX = ("convert with inference_input_type=tf.int8 and "
               "inference_output_type=tf.int8, e.g. `tinydeploy quantize`")


def _type_name(code: int) -> str:
    return _TYPE_NAMES.get(code, f"TYPE_{code}")


def _tensor_kinds(facts: ModelFacts) -> tuple[set[str], set[str], str | None]:
    """(activation dtypes, constant dtypes, name of the first float activation)."""
    model = facts.model
    assert model is not None
    buffers = model.buffers or []
    activations: set[str] = set()
    constants: set[str] = set()
    first_float: str | None = None
    for sub in model.subgraphs or []:
        for t in sub.tensors or []:
            buf = buffers[t.buffer] if 0 <= t.buffer < len(buffers) else None
            is_const = buf is not None and (
                (buf.data is not None and len(buf.data) > 0) or bool(buf.size))
            dtype = _type_name(t.type)
            (constants if is_const else activations).add(dtype)
            if not is_const and dtype == "FLOAT32" and first_float is None:
                first_float = tensor_name(t)
    return activations, constants, first_float


def _first_float_op(facts: ModelFacts) -> str | None:
    """The first operator (other than (DE)QUANTIZE) reading or writing a float32 tensor."""
    assert facts.model is not None
    sub = facts.model.subgraphs[0]
    tensors = sub.tensors or []
    for op, name in zip(sub.operators or [], facts.op_sequence, strict=False):
        if name in ("QUANTIZE", "DEQUANTIZE"):
            continue
        used = [int(i) for i in [*(op.inputs if op.inputs is not None else []),
                                 *(op.outputs if op.outputs is not None else [])] if i >= 0]
        if any(tensors[i].type == schema.TensorType.FLOAT32 for i in used):
            return name
    return None


def _reject(path: str, problem: str, fix: str = REQUANTIZE_FIX) -> TinyDeployError:
    return TinyDeployError("model_rejected", path=path, problem=problem, fix=fix)


def _check_int8_io(path: str, io: list[tuple[str, TensorFacts]]) -> None:
    """Reject the first input or output that is not int8."""
    for role, t in io:
        if t.dtype != "INT8":
            raise _reject(path, f"{role} '{t.name}' is {t.dtype}; tinydeploy needs int8 "
                                "inputs and outputs", INT8_IO_FIX)


def check(model: str | Path | bytes | ModelFacts) -> ModelFacts:
    """Return the model's facts if it is full int8 and every op runs on TFLM; else raise.

    Args:
        model: ``.tflite`` path, bytes or :class:`ModelFacts`.

    Returns:
        The model's :class:`ModelFacts`.

    Raises:
        TinyDeployError: ``file_not_found`` / ``bad_flatbuffer`` (exit 2/3), or
            ``model_rejected`` / ``unsupported_op`` (exit 3) for float, hybrid, uint8
            models, float inputs/outputs and operators TFLite Micro lacks.
    """
    facts = load(model)  # file_not_found / bad_flatbuffer
    path = facts.path
    activations, constants, first_float = _tensor_kinds(facts)
    io = [("input", t) for t in facts.inputs] + [("output", t) for t in facts.outputs]
    io_types = {t.dtype for _, t in io}

    if not facts.op_sequence:
        raise _reject(path, "the model has no operators",
                      "export a model with at least one layer")
    if "UINT8" in io_types or "UINT8" in activations:
        where = next((f"{role} '{t.name}'" for role, t in io if t.dtype == "UINT8"),
                     "its activations")
        raise _reject(path, f"uint8 model ({where} is uint8); tinydeploy needs int8",
                      INT8_IO_FIX)
    if "FLOAT32" in activations or "FLOAT32" in io_types:
        int8_weights = "INT8" in constants
        int8_acts = "INT8" in activations
        if int8_weights and not int8_acts:
            raise _reject(path, "hybrid (dynamic-range) model: int8 weights with float32 "
                                "activations, i.e. quantized without a representative dataset")
        if not int8_weights and not int8_acts:
            kind = "float16-weight" if "FLOAT16" in constants else "float32"
            raise _reject(path, f"{kind} model: it is not quantized")
        _check_int8_io(path, io)
        op = _first_float_op(facts)
        if op is not None:
            raise _reject(path, f"partially quantized: operator {op} runs in float32 (the "
                                "converter found no int8 kernel for it)",
                          f"replace the layer that produces {op} with layers that have int8 "
                          "kernels")
        raise _reject(path, f"partially quantized: tensor '{first_float}' is float32",
                      "convert with supported_ops=[tf.lite.OpsSet.TFLITE_BUILTINS_INT8] so "
                      "every op is int8 (replace layers that fail to convert)")
    if "INT16" in activations:
        raise _reject(path, "int16 activations (16x8 quantization); tinydeploy needs int8",
                      REQUANTIZE_FIX)
    _check_int8_io(path, io)
    for role, t in io:
        if t.scale is None or t.zero_point is None:
            raise _reject(path, f"{role} '{t.name}' has no quantization parameters")
    for name in dict.fromkeys(facts.op_sequence):
        info = TFLM_OPS.get(name)
        if info is None:
            raise TinyDeployError(
                "unsupported_op", path=path, op=name, runtime=RUNTIME,
                fix="replace the layer that produces it with TFLM-supported layers "
                    "(list: tinydeploy/ops.py TFLM_OPS)")
        if not info.int8:
            raise TinyDeployError(
                "unsupported_op", path=path, op=f"{name} (in int8)", runtime=RUNTIME,
                fix=f"TFLM has no int8 {name} kernel: replace that layer or compute it "
                    "outside the model")
    return facts
