"""Float interfaces: float32 inputs/outputs behind boundary QUANTIZE/DEQUANTIZE around an int8
core (TFLiteConverter's default output, how MCUNet ships). The guard accepts them, the C
runtime computes the boundary ops bit-exactly as TFLM (round half away from zero, float
division) on native and qemu-cm4 (soft float), validate sends float data and compares
float outputs by bit pattern, and ``--io int8`` strips the boundary ops exactly.

The look-alike (``look_alike``): QUANTIZE, PAD, CONV_2D, DEPTHWISE_CONV_2D, ADD,
MAX_POOL_2D, TRANSPOSE, MEAN, FULLY_CONNECTED, DEQUANTIZE -- MCUNet's operators -- converted
with nothing but ``optimizations`` and a representative dataset. The real MCUNet model runs
in ``test_mcunet_vww_when_present`` when ``$TINYDEPLOY_MCUNET_VWW`` names it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import needs_tflm
import numpy as np
import pytest

from tinydeploy.cli import main
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load
from tinydeploy.guard import check
from tinydeploy.hostref import HostModel, dequantize, quantize_input
from tinydeploy.hostref_native import reference_model
from tinydeploy.interface import float_boundaries, strip_float_io, with_io

DATA = Path(__file__).parent / "data"
SHAPE = (16, 16, 3)
ARM = all(shutil.which(t) for t in ("arm-none-eabi-gcc", "arm-none-eabi-size",
                                    "qemu-system-arm"))


STORED = DATA / "float_io"  # converted once by `python tests/test_float_io.py` (no TF in CI)


def _keras_mcunet_like(keras):
    """QUANTIZE, PAD, CONV_2D, DEPTHWISE_CONV_2D, ADD, MAX_POOL_2D, TRANSPOSE, MEAN x2,
    FULLY_CONNECTED, DEQUANTIZE: MCUNet's operators."""
    x_in = keras.Input(SHAPE, batch_size=1)
    y = keras.layers.ZeroPadding2D(1)(x_in)
    y = keras.layers.Conv2D(8, 3, strides=2, activation="relu6")(y)
    z = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6")(y)
    y = keras.layers.Add()([y, keras.layers.Conv2D(8, 1)(z)])
    y = keras.layers.MaxPooling2D(2)(y)
    y = keras.layers.Permute((3, 1, 2))(y)  # TRANSPOSE, then MEAN over W and H (as MCUNet)
    y = keras.ops.mean(keras.ops.mean(y, axis=3), axis=2)
    return keras.Model(x_in, keras.layers.Dense(3)(y))


def _keras_16x8(keras):
    """16x8 core (int16 activations) behind float32 QUANTIZE/DEQUANTIZE."""
    x_in = keras.Input(SHAPE, batch_size=1)
    y = keras.layers.Conv2D(6, 3, strides=2, activation="relu")(x_in)
    z = keras.layers.DepthwiseConv2D(3, padding="same")(y)
    y = keras.layers.Add()([y, z])
    y = keras.layers.Reshape((-1,))(y)
    return keras.Model(x_in, keras.layers.Dense(4)(y))


def _keras_conv(keras):
    """Conv + pool + Dense, quantized as `tinydeploy quantize --io float` does (per-tensor
    Dense): what every TFLM library computes as the host does."""
    x_in = keras.Input(SHAPE, batch_size=1)
    y = keras.layers.Conv2D(6, 3, strides=2, activation="relu")(x_in)
    y = keras.layers.MaxPooling2D(2)(y)
    return keras.Model(x_in, keras.layers.Dense(5)(keras.layers.Flatten()(y)))


def _detect_like(tf, rng: np.random.Generator):
    """Like MCUNet's detection.tflite: several float outputs, RESIZE_NEAREST_NEIGHBOR 2x up
    (no half-pixel centers, as MCUNet), 2x down and 3x up (half-pixel centers)."""
    w = rng.normal(0, 0.5, size=(3, 3, 3, 8)).astype(np.float32)
    w2 = rng.normal(0, 0.5, size=(1, 1, 8, 4)).astype(np.float32)

    def f(x):
        y = tf.nn.relu(tf.nn.conv2d(x, w, 2, "SAME"))  # 8x8x8
        a = tf.nn.conv2d(tf.compat.v1.image.resize_nearest_neighbor(y, [16, 16]), w2, 1,
                         "SAME")
        return (a, tf.image.resize(y, [4, 4], method="nearest"),
                tf.image.resize(y, [24, 24], method="nearest"))

    return tf.function(f, input_signature=[tf.TensorSpec([1, *SHAPE], tf.float32)])


def build_model(name: str) -> bytes:
    """Convert a look-alike with the converter's defaults (only optimizations and a
    representative dataset; ``float16x8``: plus the 16x8 op set)."""
    import keras
    import tensorflow as tf

    from tinydeploy.quantization import to_tflite

    keras.utils.set_random_seed(3)
    rep = np.random.default_rng(0).uniform(-1, 1, size=(32, *SHAPE)).astype(np.float32)
    if name == "mcunet_like":
        return to_tflite(_keras_mcunet_like(keras), rep, converter_defaults=True)
    if name == "conv_float":
        return to_tflite(_keras_conv(keras), rep, io_type="float32")
    if name == "detect_like":
        fn = _detect_like(tf, np.random.default_rng(3))
    else:
        model = _keras_16x8(keras)
        spec = tf.TensorSpec([1, *SHAPE], tf.float32)
        fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([r[None]] for r in rep)
    if name == "float16x8":
        conv.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    return conv.convert()


def _model(name: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    stored = STORED / f"{name}.tflite"
    if stored.is_file():
        return stored
    path = tmp_path_factory.mktemp("float_io") / f"{name}.tflite"
    path.write_bytes(build_model(name))
    return path


@pytest.fixture(scope="module")
def look_alike(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MCUNet's operators around a float interface (converter defaults)."""
    return _model("mcunet_like", tmp_path_factory)


@pytest.fixture(scope="module")
def detect_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three float outputs, nearest-neighbour resizes (like MCUNet's detection model)."""
    return _model("detect_like", tmp_path_factory)


@pytest.fixture(scope="module")
def look_alike16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16x8 core around a float interface (float32 <-> int16 boundary ops)."""
    return _model("float16x8", tmp_path_factory)


def _ties(scale: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """n float32 values whose float32 quotient by ``scale`` is exactly k + 0.5 (both signs)."""
    k = rng.integers(-120, 120, size=4 * n)
    x = ((k + 0.5) * np.float64(np.float32(scale))).astype(np.float32)
    exact = (x / np.float32(scale)).astype(np.float64) == k + 0.5
    assert exact.sum() >= n
    return x[exact][:n]


def _samples(facts, n: int, seed: int = 1) -> np.ndarray:
    """Uniform inputs, one all-zero sample, saturating values and exact rounding ties."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.2, 1.2, size=(n, *SHAPE)).astype(np.float32)
    x[0] = 0.0
    x[1, 0, 0, :] = (1e4, -1e4, 3e5)  # saturate int8 (within int32: TFLM's cast is defined)
    scale = float_boundaries(facts)[0].inner.scale
    x[2:].reshape(n - 2, -1)[:, :40] = _ties(scale, 40 * (n - 2), rng).reshape(n - 2, 40)
    return x


def test_guard_accepts_the_float_interface(look_alike: Path, capsys) -> None:
    facts = check(look_alike)
    assert facts.interface == "float" and facts.quantization == "int8"
    assert facts.inputs[0].dtype == facts.outputs[0].dtype == "FLOAT32"
    assert "FLOAT32" not in facts.activation_dtypes
    bounds = float_boundaries(facts)
    assert [(b.role, b.inner.dtype) for b in bounds] == [("input", "INT8"), ("output", "INT8")]
    assert main(["check", str(look_alike)]) == 0
    assert "float interface" in capsys.readouterr().out


def _retyped(data: bytes, edit) -> bytes:
    import flatbuffers

    from tinydeploy.tflm_py import schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytearray(data), 0))
    edit(model.subgraphs[0])
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_guard_refuses_float_into_or_out_of_other_ops() -> None:
    data = (DATA / "sine_mlp.tflite").read_bytes()

    def float_input(sub) -> None:  # FLOAT32 straight into FULLY_CONNECTED
        sub.tensors[int(sub.inputs[0])].type = 0

    def float_output(sub) -> None:  # FLOAT32 out of FULLY_CONNECTED
        sub.tensors[int(sub.outputs[0])].type = 0

    for edit, role in ((float_input, "input"), (float_output, "output")):
        with pytest.raises(TinyDeployError) as err:
            check(_retyped(data, edit))
        text = str(err.value)
        assert err.value.code == "model_rejected" and "\n" not in text
        assert f"{role} " in text and "FLOAT32" in text and "QUANTIZE" in text


@needs_tflm.mark
def test_c_runtime_16x8_boundary_ops_bit_exact(look_alike16: Path, tmp_path: Path) -> None:
    """float32 -> int16 QUANTIZE and int16 -> float32 DEQUANTIZE around a 16x8 core."""
    from tinydeploy.cruntime import generate_c
    from tinydeploy.cruntime.harness import build_harness, run_harness

    facts = check(look_alike16)
    assert facts.quantization == "16x8" and facts.interface == "float"
    assert [b.inner.dtype for b in float_boundaries(facts)] == ["INT16", "INT16"]
    x = np.random.default_rng(4).uniform(-1.5, 1.5, size=(24, *SHAPE)).astype(np.float32)
    x[0, 0, 0, :] = (1e4, -1e4, 0.0)
    ties = _ties(float_boundaries(facts)[0].inner.scale, 200, np.random.default_rng(5))
    x[1:].reshape(23, -1)[:, :8] = ties[:184].reshape(23, 8) / 64  # small k: below the clip
    binary = build_harness(generate_c(facts, tmp_path / "c", tflm_arena=False).out_dir)
    got = run_harness(binary, x, facts.outputs[0].shape[1:], "float32")
    want = HostModel(facts).predict(x).reshape(got.shape).astype(np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_strip_float_io_is_exact(look_alike: Path) -> None:
    """--io int8: host-quantized data through the stripped model, dequantized, equals the
    float model on the float data bit for bit (the data convention loses nothing)."""
    facts = load(look_alike)
    stripped = check(strip_float_io(facts))
    assert stripped.interface == "quantized" and stripped.path.endswith("_int8io.tflite")
    assert stripped.op_sequence == facts.op_sequence[1:-1]
    assert stripped.tensor_count == facts.tensor_count - 2
    assert [t.dtype for t in (*stripped.inputs, *stripped.outputs)] == ["INT8", "INT8"]
    assert len(stripped.stripped_io) == 2 and "QUANTIZE" in stripped.stripped_io[0]
    assert strip_float_io(facts).sha256 == stripped.sha256  # deterministic: same firmware
    assert with_io(stripped, "int8") is stripped and with_io(facts, "model") is facts
    x = _samples(facts, 12)
    want = reference_model(facts).predict(x)
    q_out = reference_model(stripped).predict(quantize_input(x, stripped.inputs[0]))
    got = dequantize(q_out, stripped.outputs[0]).reshape(want.shape)
    np.testing.assert_array_equal(got.view(np.uint32), want.astype(np.float32).view(np.uint32))
    with pytest.raises(TinyDeployError) as err:
        strip_float_io(stripped)
    assert err.value.code == "model_rejected" and "drop --io int8" in str(err.value)
    with pytest.raises(TinyDeployError) as err:
        with_io(stripped, "float")
    assert err.value.code == "bad_argument" and "quantize --io float" in str(err.value)


def _validate_both(look_alike: Path, tmp_path: Path, board: str, n: int,
                   int8: bool = True) -> None:
    from tinydeploy.validation import validate

    facts = load(look_alike)
    data = tmp_path / "data.npz"
    np.savez(data, x_test=_samples(facts, n))
    res = validate(look_alike, data, tmp_path / "float", board=board)
    assert res.passed and res.samples == n and res.metrics["exact_match_rate"] == 1.0
    rule = res.metrics["comparison"][0]
    assert rule["dtype"] == "FLOAT32" and rule["method"] == "bit pattern"
    assert res.device["inputs"][0]["dtype"] == "FLOAT32"
    if not int8:
        return
    res8 = validate(look_alike, data, tmp_path / "int8", board=board, io="int8")
    assert res8.passed and res8.metrics["comparison"][0]["dtype"] == "INT8"
    assert res8.device["inputs"][0]["dtype"] == "INT8"


def test_validate_float_data_on_native(look_alike: Path, tmp_path: Path) -> None:
    """Exact rounding ties (k + 0.5: TFLM rounds them away from zero, rint would not) and
    saturating values through the C runtime's QUANTIZE, and its DEQUANTIZE, by bit
    pattern against the TFLM Python runtime; the same data through --io int8."""
    facts = load(look_alike)
    x = _samples(facts, 16)
    inner = float_boundaries(facts)[0].inner
    half_even = np.clip(np.round(x / np.float32(inner.scale)), -128, 127)
    assert np.sum(quantize_input(x, inner) != half_even) > 100  # the ties tell them apart
    _validate_both(look_alike, tmp_path, "native", 16)


@pytest.mark.skipif(not ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed")
def test_validate_float_data_on_qemu_cm4_soft_float(look_alike: Path, tmp_path: Path) -> None:
    _validate_both(look_alike, tmp_path, "qemu-cm4", 6, int8=False)


def test_several_float_outputs_and_resizes_on_native(detect_like: Path,
                                                     tmp_path: Path) -> None:
    from tinydeploy.validation import validate

    facts = check(detect_like)
    assert facts.op_sequence.count("RESIZE_NEAREST_NEIGHBOR") == 3
    assert [t.dtype for t in facts.outputs] == ["FLOAT32"] * 3
    data = tmp_path / "d.npz"
    np.savez(data, x_test=_samples(facts, 8))
    res = validate(detect_like, data, tmp_path / "out", board="native")
    assert res.passed and len(res.metrics["comparison"]) == 3
    assert {r["method"] for r in res.metrics["comparison"]} == {"bit pattern"}


def test_integer_data_for_a_float_input_is_refused(look_alike: Path, tmp_path: Path) -> None:
    from tinydeploy.validation import validate

    data = tmp_path / "q.npz"
    np.savez(data, x_test=np.zeros((2, *SHAPE), np.int8))
    with pytest.raises(TinyDeployError) as err:
        validate(look_alike, data, tmp_path / "out", board="native")
    assert err.value.code == "bad_data" and "--io int8" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_generate_keeps_or_strips_the_interface(look_alike: Path, tmp_path: Path) -> None:
    """TFLM firmware: float32 tensors in the settings and API; --io int8 embeds the
    stripped model and names the removed ops with their scale and zero point."""
    from tinydeploy.render import generate

    generate(look_alike, tmp_path / "f", boards=["nano33ble"], fmt="platformio")
    settings = next((tmp_path / "f").rglob("model_settings.h")).read_text()
    assert "#define TD_INPUT_DTYPE TD_DTYPE_FLOAT32" in settings
    assert "Float interface" in settings
    generate(look_alike, tmp_path / "i", boards=["nano33ble"], fmt="platformio", io="int8")
    stripped = strip_float_io(look_alike)
    s8 = next((tmp_path / "i").rglob("model_settings.h")).read_text()
    assert "#define TD_INPUT_DTYPE TD_DTYPE_INT8" in s8 and "--io int8" in s8
    assert f"sha256 {stripped.sha256}" in s8
    inner = float_boundaries(load(look_alike))[0].inner
    assert f"#define TD_INPUT_SCALE {float(np.float32(inner.scale))!r}f" in s8
    assert f"#define TD_INPUT_ZERO_POINT {inner.zero_point}" in s8
    api = next((tmp_path / "i").rglob("td_app.h")).read_text()
    assert "QUANTIZE" in api and "round half away" in api


@pytest.mark.parametrize("io", ["model", "int8"])
def test_app_api_basic_example_on_the_host(look_alike: Path, tmp_path: Path, io: str) -> None:
    """The C-runtime library's basic example (built with the host compiler): td_run_float
    on x_test[0] prints the float model's outputs -- floats copied in and out, or (--io
    int8) quantized and dequantized by the API as TFLM's QUANTIZE/DEQUANTIZE would."""
    from test_appfw import _host_build, _parse

    from tinydeploy.render import generate

    facts = load(look_alike)
    x = _samples(facts, 3)[2:]  # rounding ties in the first 40 values
    np.savez(tmp_path / "d.npz", x_test=x)
    res = generate(look_alike, tmp_path / "fw", boards=["nano33ble"], runtime="c",
                   fmt="arduino", data=tmp_path / "d.npz", io=io)
    assert res.sketch_dir is not None
    exe = _host_build(res.sketch_dir, tmp_path / "obj")
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30)
    got = np.array([float(v) for v in _parse(out.stdout)["outputs"]])
    want = reference_model(facts).predict(x)[0].reshape(-1)
    np.testing.assert_allclose(got, want, atol=6e-5)  # printed with 4 decimals


def test_quantize_io_float(sine_run, tmp_path: Path) -> None:
    assert main(["quantize", str(sine_run.model_keras), "--data", str(sine_run.data_npz),
                 "--out", str(tmp_path), "--io", "float"]) == 0
    facts = check(tmp_path / "model_int8.tflite")
    assert facts.interface == "float"
    report = json.loads((tmp_path / "quantization.json").read_text())
    assert report["interface"] == "float"
    assert report["converter"]["inference_input_type"] == "float32"
    row = report["tensors"][0]
    assert row["dtype"] == "FLOAT32" and "QUANTIZE" in row["boundary"] and row["scale"] > 0


def test_deploy_default_converter_model_from_train(sine_run, tmp_path: Path) -> None:
    """train output -> TFLiteConverter defaults (float interface, per-channel Dense) ->
    deploy on native passes, and its --io int8 variant passes too."""
    from tinydeploy.pipeline import deploy
    from tinydeploy.quantization import to_tflite
    from tinydeploy.training import load_keras_model

    rep = np.load(sine_run.data_npz)["x_train"][:100]
    model = tmp_path / "sine_default.tflite"
    model.write_bytes(to_tflite(load_keras_model(sine_run.model_keras), rep,
                                converter_defaults=True))
    assert check(model).interface == "float"
    res = deploy(model, tmp_path / "float", board="native", data=sine_run.data_npz,
                 samples=20)
    assert res.passed and res.validation.device["outputs"][0]["dtype"] == "FLOAT32"
    res8 = deploy(model, tmp_path / "int8", board="native", data=sine_run.data_npz,
                  samples=20, io="int8")
    assert res8.passed and res8.validation.device["outputs"][0]["dtype"] == "INT8"


TFLM_TREE = os.environ.get("TINYDEPLOY_TFLM_SRC", "")


@pytest.mark.skipif(not TFLM_TREE, reason="set TINYDEPLOY_TFLM_SRC to a TFLM tree (an Arduino "
                                          "TFLM library or a tflite-micro checkout)")
def test_tflm_firmware_float_interface_when_tree(tmp_path_factory: pytest.TempPathFactory,
                                                  tmp_path: Path) -> None:
    """The generated TFLite Micro firmware on native: float32 tensors over the protocol,
    the model's own QUANTIZE/DEQUANTIZE in TFLM; and its --io int8 variant."""
    from tinydeploy.validation import validate

    model = _model("conv_float", tmp_path_factory)
    facts = check(model)
    data = tmp_path / "d.npz"
    np.savez(data, x_test=_samples(facts, 12))
    for io in ("model", "int8"):
        res = validate(model, data, tmp_path / io, board="native", runtime="tflm", io=io)
        assert res.passed and res.device["runtime"] == "tflm", res.summary()


VWW = os.environ.get("TINYDEPLOY_MCUNET_VWW", "")


@pytest.mark.skipif(not Path(VWW).is_file(),
                    reason="MCUNet not present: set TINYDEPLOY_MCUNET_VWW to "
                           "assets/vww.tflite of github.com/mit-han-lab/tinyengine "
                           "(not committed: not ours)")
def test_mcunet_vww_when_present(tmp_path: Path) -> None:
    from tinydeploy.validation import validate

    facts = check(VWW)
    assert facts.interface == "float"
    x = np.random.default_rng(0).uniform(-1, 1, size=(3, *facts.inputs[0].shape[1:]))
    np.savez(tmp_path / "d.npz", x_test=x.astype(np.float32))
    res = validate(VWW, tmp_path / "d.npz", tmp_path / "out", board="native")
    assert res.passed and res.metrics["exact_match_rate"] == 1.0


@pytest.mark.skipif(not (Path(VWW).is_file() and TFLM_TREE),
                    reason="needs MCUNet and a TFLM tree: set TINYDEPLOY_MCUNET_VWW to "
                           "assets/vww.tflite of github.com/mit-han-lab/tinyengine and "
                           "TINYDEPLOY_TFLM_SRC to a tflite-micro checkout with its downloads")
def test_mcunet_vww_tflm_when_present(tmp_path: Path) -> None:
    """MCUNet VWW in the generated TFLite Micro firmware on native, built from the tree:
    float32 in, float32 out, every output bit-exact with the host TFLM."""
    from tinydeploy.device.tflm_tree import UPSTREAM, find_tflm_tree
    from tinydeploy.validation import validate

    tree = find_tflm_tree(TFLM_TREE, board="native")
    if tree.kind != UPSTREAM:  # Chirale 2.0.0 (TFLM of Jan 2023) rounds int8 MEAN otherwise
        pytest.skip(f"{tree.name} is no tflite-micro checkout (the must-show is upstream TFLM)")
    facts = check(VWW)
    x = np.random.default_rng(1).uniform(-1, 1, size=(20, *facts.inputs[0].shape[1:]))
    np.savez(tmp_path / "d.npz", x_test=x.astype(np.float32))
    res = validate(VWW, tmp_path / "d.npz", tmp_path / "out", board="native", runtime="tflm",
                   tflm_src=tree)
    assert res.passed and res.metrics["exact_match_rate"] == 1.0, res.summary()
    assert res.device["runtime"] == "tflm" and res.samples == 20
    assert [t["dtype"] for t in res.device["inputs"]] == ["FLOAT32"]
    assert 0 < res.device["arena_used"] <= res.device["arena_size"]


if __name__ == "__main__":  # regenerate tests/data/float_io/*.tflite (TensorFlow converter)
    STORED.mkdir(parents=True, exist_ok=True)
    for name_ in ("mcunet_like", "float16x8", "detect_like", "conv_float"):
        (STORED / f"{name_}.tflite").write_bytes(build_model(name_))
        print(name_, load(STORED / f"{name_}.tflite").op_names)
