"""The guard accepts what TFLM runs (int8 incl. quantized LSTMs, 16x8) and names the real
cause of every refusal: custom ops by name, int16 I/O without int16 activations, int32
outputs of kernels that write only int8/int16, ops without a kernel for the model's
scheme; the C runtime refuses what it lacks with the op and dtype named, before writing
anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinydeploy.cruntime import generate_c
from tinydeploy.errors import TinyDeployError
from tinydeploy.guard import check

DATA = Path(__file__).parent / "data"


def _edited(name: str, edit) -> bytes:
    import flatbuffers

    from tinydeploy.tflm_py import schema

    data = (DATA / f"{name}.tflite").read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytearray(data), 0))
    edit(model, schema)
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _refused(data: bytes, code: str) -> str:
    with pytest.raises(TinyDeployError) as err:
        check(data)
    assert err.value.code == code, str(err.value)
    assert "\n" not in str(err.value)
    return str(err.value)


def _rename_op(old: str, new: str, custom: bytes | None = None):
    def edit(model, schema) -> None:
        for c in model.operatorCodes:
            if max(c.builtinCode, c.deprecatedBuiltinCode) == getattr(schema.BuiltinOperator, old):
                c.builtinCode = getattr(schema.BuiltinOperator, new)
                c.deprecatedBuiltinCode = min(c.builtinCode, 127)
                if custom is not None:
                    c.customCode = custom
    return edit


def test_lstm_placeholders_and_state_are_not_activations() -> None:
    facts = check(DATA / "trained_lstm_int8.tflite")
    assert facts.quantization == "int8" and facts.stateful
    assert facts.activation_dtypes == {"INT8": 5}  # no FLOAT32, no INT16 cell state
    assert "input_to_input_intermediate" in facts.placeholders
    assert len(facts.tensor_dtypes) == facts.tensor_count
    assert facts.tensor_dtypes.count("FLOAT32") == 4  # the placeholders, typed as stored


def test_16x8_models_are_accepted_with_facts() -> None:
    facts = check(DATA / "seanet_conv0.tflite")
    assert facts.quantization == "16x8" and not facts.stateful
    assert facts.activation_dtypes == {"INT16": 2}
    assert facts.constant_dtypes == {"INT8": 1, "INT64": 1}


def test_custom_op_is_named() -> None:
    msg = _refused(_edited("sine_mlp", _rename_op("FULLY_CONNECTED", "CUSTOM", b"MyFancyOp")),
                   "unsupported_op")
    assert "custom operator 'MyFancyOp'" in msg and "int16" not in msg


def test_int16_input_without_int16_activations() -> None:
    def edit(model, schema) -> None:
        sub = model.subgraphs[0]
        sub.tensors[sub.inputs[0]].type = schema.TensorType.INT16

    msg = _refused(_edited("sine_mlp", edit), "model_rejected")
    assert "input" in msg and "is int16 but the model's activations are int8" in msg


def test_int32_output() -> None:
    def edit(model, schema) -> None:
        sub = model.subgraphs[0]
        sub.tensors[sub.outputs[0]].type = schema.TensorType.INT32

    msg = _refused(_edited("digits_cnn", edit), "model_rejected")
    assert "output" in msg and "is int32 but TFLM's SOFTMAX" in msg
    assert "int16 activations" not in msg


def test_16x8_op_without_int16_kernel() -> None:
    msg = _refused(_edited("seanet_conv0", _rename_op("CONV_2D", "HARD_SWISH")),
                   "unsupported_op")
    assert "HARD_SWISH (in int16, 16x8)" in msg


def test_c_runtime_names_missing_op_and_dtype(tmp_path: Path) -> None:
    # MAX_POOL_2D runs in TFLM in int16, but the C runtime has only its int8 kernel
    data = _edited("seanet_add0", _rename_op("ADD", "MAXIMUM"))
    check(data)  # TFLM has an int16 MAXIMUM
    data = _edited("seanet_conv0", _rename_op("CONV_2D", "AVERAGE_POOL_2D"))
    with pytest.raises(TinyDeployError) as err:
        generate_c(data, tmp_path / "c", tflm_arena=False)
    assert err.value.code == "unsupported_op"
    assert "AVERAGE_POOL_2D (INT16 in, INT16 out)" in str(err.value)
    assert not (tmp_path / "c").exists()
