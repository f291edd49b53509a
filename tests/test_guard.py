"""The guard accepts full-int8 TFLM models and rejects everything else with one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from models import GENERATED

from tinydeploy.cli import main
from tinydeploy.errors import TinyDeployError
from tinydeploy.guard import check
from tinydeploy.ops import TFLM_OPS

DATA = Path(__file__).parent / "data"
REFERENCE = GENERATED  # the zoo: tests/test_zoo*.py


@pytest.fixture(scope="module")
def dense_model():
    """An untrained MLP big enough (2048 weights) for dynamic-range quantization."""
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu"),
                             keras.layers.Dense(4, activation="softmax")])


@pytest.fixture(scope="module")
def rep() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(20, 32)).astype(np.float32)


def _rejected(model, code: str = "model_rejected") -> str:
    with pytest.raises(TinyDeployError) as err:
        check(model)
    assert err.value.code == code, str(err.value)
    text = str(err.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("name", REFERENCE)
def test_accepts_reference_models(name: str) -> None:
    facts = check(DATA / f"{name}.tflite")
    expected = json.loads((DATA / "ground_truth.json").read_text())[name]["ops"]
    assert facts.op_names == expected


def test_accepts_quantized_example(digits_run) -> None:
    facts = check(Path(digits_run.int8_tflite).read_bytes())
    assert all(TFLM_OPS[n].int8 for n in facts.op_names)
    assert check(facts) is facts


def test_rejects_hybrid(dense_model) -> None:
    from tinydeploy.quantization import to_tflite

    msg = _rejected(to_tflite(dense_model, rep=None, optimize=True))
    assert "quantized without a representative dataset" in msg
    assert "tinydeploy quantize" in msg  # the fix


def test_rejects_float(dense_model) -> None:
    from tinydeploy.quantization import to_tflite

    msg = _rejected(to_tflite(dense_model, optimize=False))
    assert "float32 model" in msg and "not quantized" in msg


def test_rejects_uint8_io(dense_model, rep) -> None:
    from tinydeploy.quantization import to_tflite

    msg = _rejected(to_tflite(dense_model, rep, io_type="uint8"))
    assert "uint8" in msg


def test_accepts_float_interface_refuses_float_core(dense_model, rep) -> None:
    """Float I/O behind QUANTIZE/DEQUANTIZE is accepted (tests/test_float_io.py); float
    I/O into a float core is not."""
    from tinydeploy.quantization import to_tflite

    facts = check(to_tflite(dense_model, rep, io_type="float32"))
    assert facts.interface == "float" and facts.quantization == "int8"
    msg = _rejected(to_tflite(dense_model, optimize=False))
    assert "float32 model" in msg


def test_rejects_truncated_and_garbage(tmp_path: Path) -> None:
    data = (DATA / "digits_cnn.tflite").read_bytes()
    for cut in (len(data) // 2, 100, 4):
        path = tmp_path / f"cut{cut}.tflite"
        path.write_bytes(data[:cut])
        msg = _rejected(path, "bad_flatbuffer")
        assert str(path) in msg
    path = tmp_path / "text.tflite"
    path.write_text("hello, this is not a model at all")
    assert "TFL3" in _rejected(path, "bad_flatbuffer")


def _with_op(data: bytes, old: str, new: str) -> bytes:
    """Rename one operator code of a model (the guard only reads the graph)."""
    import flatbuffers

    from tinydeploy.tflm_py import schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytearray(data), 0))
    for code in model.operatorCodes:
        if max(code.builtinCode, code.deprecatedBuiltinCode) == getattr(
                schema.BuiltinOperator, old):
            code.builtinCode = getattr(schema.BuiltinOperator, new)
            code.deprecatedBuiltinCode = min(code.builtinCode, 127)
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_rejects_unsupported_ops() -> None:
    data = (DATA / "digits_cnn.tflite").read_bytes()
    assert check(_with_op(data, "SOFTMAX", "SOFTMAX")).op_names[-1] == "SOFTMAX"
    msg = _rejected(_with_op(data, "SOFTMAX", "LSH_PROJECTION"), "unsupported_op")
    assert "LSH_PROJECTION" in msg and "TensorFlow Lite Micro" in msg
    msg = _rejected(_with_op(data, "SOFTMAX", "SIN"), "unsupported_op")
    assert "SIN" in msg and "int8" in msg


def test_cli_check(capfd, tmp_path: Path) -> None:
    assert main(["check", str(DATA / "sine_mlp.tflite")]) == 0
    assert "ok:" in capfd.readouterr().out
    bad = tmp_path / "bad.tflite"
    bad.write_bytes((DATA / "sine_mlp.tflite").read_bytes()[:300])
    assert main(["check", str(bad)]) == 3
    out, err = capfd.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err


def test_partially_quantized_names_the_float_operator() -> None:
    import flatbuffers

    from tinydeploy.tflm_py import schema

    data = (DATA / "digits_cnn.tflite").read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytearray(data), 0))
    sub = model.subgraphs[0]
    reshape = next(op for op in sub.operators
                   if model.operatorCodes[op.opcodeIndex].builtinCode
                   == schema.BuiltinOperator.RESHAPE)
    sub.tensors[reshape.outputs[0]].type = schema.TensorType.FLOAT32  # as the converter
    builder = flatbuffers.Builder(len(data) + 1024)  # leaves an op without int8 kernel
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    msg = _rejected(bytes(builder.Output()))
    assert "partially quantized: operator RESHAPE runs in float32" in msg
    assert "replace the layer that produces RESHAPE" in msg


def test_corrupt_indices_and_names_give_one_error() -> None:
    import flatbuffers

    from tinydeploy.tflm_py import schema

    data = (DATA / "sine_mlp.tflite").read_bytes()

    def edited(edit) -> bytes:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytearray(data), 0))
        edit(model.subgraphs[0])
        builder = flatbuffers.Builder(len(data) + 1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    def bad_opcode(sub) -> None:
        sub.operators[0].opcodeIndex = 99

    def bad_tensor(sub) -> None:
        sub.operators[-1].outputs[0] = 999

    def odd_name(sub) -> None:
        sub.tensors[sub.inputs[0]].name = b"\xff\xfe in"

    for edit in (bad_opcode, bad_tensor):
        assert "corrupt" in _rejected(edited(edit), "bad_flatbuffer")
    assert check(edited(odd_name)).inputs[0].name.endswith(" in")  # not valid UTF-8: kept
