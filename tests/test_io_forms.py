"""Inputs and outputs as TFLM takes them (look-alikes of TFLM's SEANet integration models):
a rank-1 input without batch axis, a rank-0 (scalar) input, an int32 shape operand as a
model input, int32 <-> int16 QUANTIZE. The guard accepts them; ``validate`` reads
``x_test_K`` with the sample axis first or a constant given once, compares every output in
its own dtype, and the C runtime runs them bit-exactly on native.

The converted look-alikes are stored in tests/data/io_forms/ (regenerate with
``python tests/test_io_forms.py``); the QUANTIZE models are written here from the schema.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tinydeploy.data import given_once, load_split
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load
from tinydeploy.guard import check

STORED = Path(__file__).parent / "data" / "io_forms"
SEED = 7


def _edit(data: bytes, fn) -> bytes:
    import flatbuffers

    from tinydeploy.tflm_py import schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytearray(data), 0))
    fn(model, schema)
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _shape_as_input(model, schema) -> None:
    """TRANSPOSE_CONV's constant output-shape operand becomes the first model input (as in
    SEANet's transpose_conv models)."""
    sub = model.subgraphs[0]
    shape = int(sub.operators[0].inputs[0])
    model.buffers.append(schema.BufferT())
    sub.tensors[shape].buffer = len(model.buffers) - 1
    sub.inputs = [shape, *[int(i) for i in sub.inputs]]


def _convert(fn, rep, scheme: str) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    io = tf.int16 if scheme == "16x8" else tf.int8
    conv.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        if scheme == "16x8" else tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = io
    return conv.convert()


def build_model(name: str) -> bytes:
    """``rank1``: SUB of a [1,2,6,8] and a [8] input (16x8); ``scalar``: relu(x/2 + s) with a
    rank-0 input s (int8); ``tconv_shape``: TRANSPOSE_CONV (with bias) whose int32 output
    shape is a model input (16x8)."""
    import tensorflow as tf

    rng = np.random.default_rng(SEED)
    f32 = tf.float32
    if name == "rank1":
        fn = tf.function(lambda x, b: x - b, input_signature=[
            tf.TensorSpec([1, 2, 6, 8], f32), tf.TensorSpec([8], f32)])
        return _convert(fn, lambda: ([rng.normal(size=(1, 2, 6, 8)).astype(np.float32),
                                      rng.normal(size=8).astype(np.float32)]
                                     for _ in range(20)), "16x8")
    if name == "scalar":
        fn = tf.function(lambda x, s: tf.nn.relu(x * 0.5 + s), input_signature=[
            tf.TensorSpec([1, 10], f32), tf.TensorSpec([], f32)])
        return _convert(fn, lambda: ([rng.normal(size=(1, 10)).astype(np.float32),
                                      np.float32(rng.normal())] for _ in range(20)), "int8")
    w = rng.normal(size=(3, 4, 4, 8)).astype(np.float32)  # h, w, out_c, in_c
    bias = rng.normal(size=4).astype(np.float32)  # with a bias, as SEANet's (TFLM of
    # January 2023 crashes on a 16x8 TRANSPOSE_CONV without one)
    fn = tf.function(lambda x: tf.nn.bias_add(tf.nn.conv2d_transpose(
        x, w, output_shape=[1, 3, 12, 4], strides=(1, 2), padding="VALID"), bias),
        input_signature=[tf.TensorSpec([1, 1, 5, 8], f32)])
    data = _convert(fn, lambda: ([rng.normal(size=(1, 1, 5, 8)).astype(np.float32)]
                                 for _ in range(20)), "16x8")
    return _edit(data, _shape_as_input)


def quantize_model(src: str, dst: str, shape: tuple[int, ...] = (1, 2, 16, 2)) -> bytes:
    """One QUANTIZE from ``src`` to ``dst`` dtype (SEANet's quantize0/1: int32 <-> int16),
    written from the schema."""
    import flatbuffers

    from tinydeploy.tflm_py import schema

    scales = {"INT32": 1.4901161193847656e-07, "INT16": 0.0009219714556820691,
              "INT8": 0.05}

    def tensor(i: int, dtype: str) -> object:
        t = schema.TensorT()
        t.name, t.shape, t.buffer = f"t{i}".encode(), list(shape), 0
        t.type = getattr(schema.TensorType, dtype)
        t.quantization = schema.QuantizationParametersT()
        t.quantization.scale, t.quantization.zeroPoint = [scales[dtype]], [0]
        return t

    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.QUANTIZE
    code.version = 1
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    sub = schema.SubGraphT()
    sub.tensors, sub.inputs, sub.outputs, sub.operators = \
        [tensor(0, src), tensor(1, dst)], [0], [1], [op]
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [sub]
    model.buffers = [schema.BufferT()]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("io_forms")
    out = {}
    for name in ("rank1", "scalar", "tconv_shape"):
        stored = STORED / f"{name}.tflite"
        if not stored.is_file():  # converted once (see __main__): no TF in CI
            stored = root / f"{name}.tflite"
            stored.write_bytes(build_model(name))
        out[name] = stored
    for name, (src, dst) in {"q32to16": ("INT32", "INT16"), "q16to32": ("INT16", "INT32"),
                             "q32to8": ("INT32", "INT8"), "q8to32": ("INT8", "INT32")}.items():
        out[name] = root / f"{name}.tflite"
        out[name].write_bytes(quantize_model(src, dst))
    return out


def test_guard_accepts_the_forms(models: dict[str, Path]) -> None:
    forms = {name: [(t.dtype, t.shape, t.sample_shape) for t in check(p).inputs]
             for name, p in models.items()}
    assert forms["rank1"][1] == ("INT16", (8,), (8,))  # no batch axis: the whole tensor
    assert forms["scalar"][1] == ("INT8", (), ())
    assert forms["tconv_shape"][0] == ("INT32", (4,), (4,))
    assert check(models["tconv_shape"]).inputs[0].scale is None  # a plain int32 operand
    assert forms["q32to16"][0][0] == "INT32" and forms["q16to32"][0][0] == "INT16"


def test_int64_io_still_refused(models: dict[str, Path]) -> None:
    def int64_input(model, schema) -> None:
        model.subgraphs[0].tensors[0].type = schema.TensorType.INT64

    with pytest.raises(TinyDeployError) as err:
        check(_edit(models["q32to16"].read_bytes(), int64_input))
    assert err.value.code == "model_rejected" and "int64" in str(err.value)


def test_load_split_constant_given_once(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x_test_0=np.zeros((5, 2, 6, 8), np.int16), x_test_1=np.ones(8, np.int16),
             x_test_2=np.array(3, np.int8), y_test=np.zeros(5))
    shapes = [(2, 6, 8), (8,), ()]
    xs, y = load_split(path, "test", 3, shapes)
    assert [given_once(x, s) for x, s in zip(xs, shapes, strict=True)] == [False, True, True]
    assert xs[2].ndim == 0 and len(y) == 5
    with pytest.raises(TinyDeployError) as err:  # without shapes: a 0-d array is no samples
        load_split(path, "test", 3)
    assert err.value.code == "bad_data" and "x_test_2" in str(err.value)
    np.savez(path, x_test_0=np.zeros((5, 2, 6, 8), np.int16), x_test_1=np.ones((4, 8)))
    with pytest.raises(TinyDeployError) as err:  # per-sample arrays must agree
        load_split(path, "test", 2, shapes[:2])
    assert "sample counts differ" in str(err.value)


def _validate(model: Path, arrays: dict[str, np.ndarray], tmp_path: Path, name: str):
    from tinydeploy.validation import validate

    np.savez(tmp_path / f"{name}.npz", **arrays)
    return validate(model, tmp_path / f"{name}.npz", tmp_path / name, board="native")


def test_rank1_and_scalar_inputs_on_native(models: dict[str, Path], tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(-32768, 32768, size=(6, 2, 6, 8)).astype(np.int16)
    b = rng.integers(-32768, 32768, size=(6, 8)).astype(np.int16)
    once = _validate(models["rank1"], {"x_test_0": x, "x_test_1": b[0]}, tmp_path, "once")
    per = _validate(models["rank1"], {"x_test_0": x, "x_test_1": b}, tmp_path, "per")
    assert once.passed and per.passed and once.samples == per.samples == 6
    assert not np.array_equal(once.device_out, per.device_out)  # b differs per sample
    np.testing.assert_array_equal(once.device_out[0], per.device_out[0])  # same b[0]
    s = rng.normal(size=6).astype(np.float32)
    res = _validate(models["scalar"], {"x_test_0": rng.normal(size=(6, 10)).astype(np.float32),
                                       "x_test_1": s}, tmp_path, "scalar")
    assert res.passed and tuple(res.device["inputs"][1]["shape"]) == ()
    assert res.metrics["comparison"][0]["dtype"] == "INT8"


def test_int32_shape_operand_on_native(models: dict[str, Path], tmp_path: Path) -> None:
    x = np.random.default_rng(2).integers(-32768, 32768, size=(5, 1, 5, 8)).astype(np.int16)
    res = _validate(models["tconv_shape"], {"x_test_0": np.array([1, 3, 12, 4], np.int32),
                                            "x_test_1": x}, tmp_path, "tconv")
    assert res.passed and res.device["inputs"][0]["dtype"] == "INT32"
    bad = np.zeros((5, 3))  # neither [N, 4] nor [4]
    with pytest.raises(TinyDeployError) as err:
        _validate(models["tconv_shape"], {"x_test_0": bad, "x_test_1": x}, tmp_path, "bad")
    assert err.value.code == "bad_data" and "given once" in str(err.value)


@pytest.mark.parametrize("name", ["q32to16", "q16to32", "q32to8", "q8to32"])
def test_int32_quantize_on_native(models: dict[str, Path], tmp_path: Path, name: str) -> None:
    """QUANTIZE to and from int32 (TFLM's Requantize), int32 compared as integers; the
    extremes of the input dtype included (int32: wrap-around as TFLM's arithmetic)."""
    t = load(models[name]).inputs[0]
    info = np.iinfo(t.numpy_dtype)
    x = np.random.default_rng(3).integers(info.min, info.max, size=(8, *t.sample_shape),
                                          endpoint=True).astype(t.numpy_dtype)
    x[0], x[1] = info.min, info.max
    res = _validate(models[name], {"x_test": x}, tmp_path, name)
    assert res.passed, res.summary()
    out = load(models[name]).outputs[0].dtype
    assert res.metrics["comparison"][0]["dtype"] == out and res.metrics["max_abs_diff_lsb"] == 0


@pytest.mark.skipif(not os.environ.get("TINYDEPLOY_TFLM_SRC"),
                    reason="set TINYDEPLOY_TFLM_SRC to a TFLM tree (an Arduino TFLM library or "
                           "a tflite-micro checkout)")
def test_tflm_firmware_takes_the_forms(models: dict[str, Path], tmp_path: Path) -> None:
    """The generated TFLite Micro firmware on native: a [8] input given once, an int32
    shape operand, int32 -> int16 QUANTIZE."""
    from tinydeploy.validation import validate

    rng = np.random.default_rng(4)
    cases = {"rank1": {"x_test_0": rng.integers(-32768, 32768, (4, 2, 6, 8)).astype(np.int16),
                       "x_test_1": rng.integers(-32768, 32768, 8).astype(np.int16)},
             "tconv_shape": {"x_test_0": np.array([1, 3, 12, 4], np.int32),
                             "x_test_1": rng.integers(-32768, 32768, (4, 1, 5, 8)).astype(
                                 np.int16)},
             "q32to16": {"x_test": rng.integers(-(1 << 31), 1 << 31, (4, 2, 16, 2)).astype(
                 np.int32)}}
    for name, arrays in cases.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
        res = validate(models[name], tmp_path / f"{name}.npz", tmp_path / name, board="native",
                       runtime="tflm")
        assert res.passed and res.device["runtime"] == "tflm", (name, res.summary())


if __name__ == "__main__":  # regenerate tests/data/io_forms/*.tflite (TensorFlow converter)
    STORED.mkdir(parents=True, exist_ok=True)
    for name_ in ("rank1", "scalar", "tconv_shape"):
        (STORED / f"{name_}.tflite").write_bytes(build_model(name_))
        print(name_, [(t.dtype, t.shape) for t in load(STORED / f"{name_}.tflite").inputs])
