"""Random per-operator models for the C runtime's extension kernels (emit_ext.py): SUB,
MAXIMUM, MINIMUM, STRIDED_SLICE, TRANSPOSE_CONV, EXPAND_DIMS, SQUEEZE and int8 LSTM, and the
16x8 variants (int16 activations, int8 weights) of FULLY_CONNECTED, CONV_2D,
DEPTHWISE_CONV_2D, ADD, SUB, MUL, PAD, LEAKY_RELU, RESHAPE and QUANTIZE (int8 <-> int16).

Each model (random shapes and weights, several seeds; some with two inputs) is converted
with the TFLite converter (full int8, or the 16x8 ops set), generated as C, compiled with the
stdin/stdout harness and compared byte for byte with the TFLM Python runtime on random
inputs spanning the input dtype's whole range.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import needs_tflm
import numpy as np
import pytest
from test_cruntime_ops import _randomize

from tinydeploy.cruntime import generate_c
from tinydeploy.cruntime.emit_lstm import STEP_FN
from tinydeploy.cruntime.harness import build_harness, run_harness_bytes
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import ModelFacts, load
from tinydeploy.guard import check

Built = tuple[Any, list[str]]
Builder = Callable[[Any, np.random.Generator], Built]
ACTS = [None, "relu", "relu6"]


def _img(k: Any, r: np.random.Generator, hw: tuple[int, int] = (3, 8),
         c: tuple[int, int] = (1, 5)) -> Any:
    h, w = (int(v) for v in r.integers(hw[0], hw[1], size=2))
    return k.Input((h, w, int(r.integers(*c))), batch_size=1)


def _two_inputs(kind: str, broadcast: bool) -> Builder:
    """Two model inputs straight into one binary op (exercises several inputs too)."""
    def build(k: Any, r: np.random.Generator) -> Built:
        a = _img(k, r)
        shape = tuple(a.shape[1:])
        if broadcast:
            axis = int(r.integers(3))
            shape = tuple(1 if d == axis else s for d, s in enumerate(shape))
        b = k.Input(shape, batch_size=1)
        layer = {"SUB": k.layers.Subtract(), "MAXIMUM": k.layers.Maximum(),
                 "MINIMUM": k.layers.Minimum(), "ADD": k.layers.Add(),
                 "MUL": k.layers.Multiply()}[kind]
        return k.Model([a, b], layer([a, b])), [kind]
    return build


def _binary_after_conv(kind: str) -> Builder:
    """a op b on two conv branches (quantized operands with different scales)."""
    def build(k: Any, r: np.random.Generator) -> Built:
        x = _img(k, r)
        c = int(r.integers(1, 5))
        a = k.layers.Conv2D(c, 1)(x)
        b = k.layers.Conv2D(c, 3, padding="same")(x)
        layer = {"SUB": k.layers.Subtract(), "ADD": k.layers.Add(),
                 "MUL": k.layers.Multiply(), "MAXIMUM": k.layers.Maximum(),
                 "MINIMUM": k.layers.Minimum()}[kind]
        return k.Model(x, layer([a, b])), [kind]
    return build


def _add_const16(k: Any, r: np.random.Generator) -> Built:
    """A constant operand (an int16 constant tensor in the 16x8 model)."""
    x = _img(k, r)
    c = r.normal(0, 1.0, size=(1, 1, 1, x.shape[-1])).astype(np.float32)
    y = k.layers.LeakyReLU(negative_slope=0.2)(k.layers.Conv2D(x.shape[-1], 1)(x))
    return k.Model(x, k.layers.Lambda(lambda t: t + c)(y)), ["ADD"]


def _strided_slice(k: Any, r: np.random.Generator) -> Built:
    x = _img(k, r, (5, 10))
    y = k.layers.Conv2D(int(r.integers(2, 5)), 1)(x)
    h, w = y.shape[1], y.shape[2]
    b0, s0 = int(r.integers(0, h // 2)), int(r.integers(1, 3))
    b1, e1 = int(r.integers(0, 2)), int(r.integers(w - 2, w + 1))
    y = k.layers.Lambda(lambda t: t[:, b0::s0, b1:e1, :])(y)
    return k.Model(x, k.layers.Conv2D(2, 1)(y)), ["STRIDED_SLICE"]


def _strided_slice_neg(k: Any, r: np.random.Generator) -> Built:
    """Negative stride, a masked end and a shrunk axis."""
    x = _img(k, r, (5, 10))
    y = k.layers.Conv2D(int(r.integers(2, 5)), 1)(x)
    w = y.shape[2]
    k0 = int(r.integers(0, w))
    y = k.layers.Lambda(lambda t: t[:, -1::-2, k0, :])(y)  # [1, ceil(h/2), c]
    return k.Model(x, k.layers.Dense(2)(y)), ["STRIDED_SLICE"]


def _transpose_conv(k: Any, r: np.random.Generator) -> Built:
    x = _img(k, r, (2, 6))
    y = k.layers.Conv2DTranspose(int(r.integers(1, 5)), int(r.integers(2, 4)),
                                 strides=int(r.integers(1, 3)),
                                 padding=str(r.choice(["same", "valid"])),
                                 use_bias=bool(r.integers(2)))(x)
    return k.Model(x, y), ["TRANSPOSE_CONV"]


def _expand_squeeze(k: Any, r: np.random.Generator) -> Built:
    x = k.Input((int(r.integers(3, 9)), int(r.integers(2, 6))), batch_size=1)
    y = k.layers.Dense(int(r.integers(2, 6)))(x)
    y = k.layers.Lambda(lambda t: k.ops.expand_dims(t, 2))(y)  # [1, T, 1, C]
    y = k.layers.Conv2D(int(r.integers(2, 5)), (3, 1), padding="same")(y)
    y = k.layers.Lambda(lambda t: k.ops.squeeze(t, 2))(y)
    return k.Model(x, k.layers.Dense(3)(y)), ["RESHAPE"]  # EXPAND_DIMS/SQUEEZE: see below


def _as_expand_squeeze(data: bytes) -> bytes:
    """The converter writes expand_dims/squeeze as RESHAPE: turn the RESHAPE that adds a
    unit axis into EXPAND_DIMS (axis 2) and the one that drops it into SQUEEZE."""
    import flatbuffers

    from tinydeploy.tflm_py import schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytearray(data), 0))
    sub = model.subgraphs[0]

    def code(name: str) -> int:
        c = schema.OperatorCodeT()
        c.builtinCode = c.deprecatedBuiltinCode = getattr(schema.BuiltinOperator, name)
        c.version = 1
        model.operatorCodes.append(c)
        return len(model.operatorCodes) - 1

    for op in sub.operators:
        if model.operatorCodes[op.opcodeIndex].builtinCode != schema.BuiltinOperator.RESHAPE:
            continue
        rank_in = len(sub.tensors[op.inputs[0]].shape)
        rank_out = len(sub.tensors[op.outputs[0]].shape)
        if rank_out == rank_in + 1:  # [1, T, C] -> [1, T, 1, C]
            buf = schema.BufferT()
            buf.data = list(np.array([2], np.int32).tobytes())
            model.buffers.append(buf)
            axis = schema.TensorT()
            axis.shape, axis.type, axis.name = [1], schema.TensorType.INT32, b"axis"
            axis.buffer = len(model.buffers) - 1
            sub.tensors.append(axis)
            op.opcodeIndex = code("EXPAND_DIMS")
            op.inputs = [op.inputs[0], len(sub.tensors) - 1]
            op.builtinOptionsType = schema.BuiltinOptions.ExpandDimsOptions
            op.builtinOptions = schema.ExpandDimsOptionsT()
        elif rank_out == rank_in - 1:  # [1, T, 1, C] -> [1, T, C]
            op.opcodeIndex = code("SQUEEZE")
            op.inputs = [op.inputs[0]]
            op.builtinOptionsType = schema.BuiltinOptions.SqueezeOptions
            op.builtinOptions = schema.SqueezeOptionsT()
            op.builtinOptions.squeezeDims = [2]
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _conv16(k: Any, r: np.random.Generator) -> Built:
    x = _img(k, r)
    stride = int(r.integers(1, 3))
    y = k.layers.Conv2D(int(r.integers(1, 6)), int(r.integers(1, 4)), strides=stride,
                        dilation_rate=1 if stride > 1 else int(r.integers(1, 3)),
                        padding=str(r.choice(["same", "valid"])),
                        activation=ACTS[int(r.integers(3))])(x)
    return k.Model(x, y), ["CONV_2D"]


def _dwconv16(k: Any, r: np.random.Generator) -> Built:
    x = _img(k, r)
    y = k.layers.DepthwiseConv2D(int(r.integers(2, 4)), strides=int(r.integers(1, 3)),
                                 depth_multiplier=int(r.integers(1, 3)),
                                 padding=str(r.choice(["same", "valid"])),
                                 activation=ACTS[int(r.integers(3))])(x)
    return k.Model(x, y), ["DEPTHWISE_CONV_2D"]


def _dense16(k: Any, r: np.random.Generator) -> Built:
    x = k.Input((int(r.integers(2, 20)),), batch_size=1)
    y = k.layers.Dense(int(r.integers(1, 12)), activation=ACTS[int(r.integers(3))])(x)
    y = k.layers.Reshape((y.shape[-1], 1))(y)
    return k.Model(x, y), ["FULLY_CONNECTED", "RESHAPE"]


def _pad_leaky16(k: Any, r: np.random.Generator) -> Built:
    x = _img(k, r)
    y = k.layers.Conv2D(int(r.integers(1, 4)), 1)(x)
    y = k.layers.LeakyReLU(negative_slope=float(r.uniform(0.05, 0.5)))(y)
    y = k.layers.ZeroPadding2D(((int(r.integers(0, 3)), 1), (1, int(r.integers(0, 3)))))(y)
    return k.Model(x, k.layers.Conv2D(2, 2)(y)), ["LEAKY_RELU", "PAD"]


# case -> (builder, seeds, "int8" | "16x8io" (16x8 with int16 I/O: the converter's only
# integer I/O for 16x8; QUANTIZE int8 <-> int16 is tested by appending it below))
CASES: dict[str, tuple[Builder, int, str]] = {
    "sub_inputs": (_two_inputs("SUB", False), 1, "int8"),
    "sub_bcast": (_two_inputs("SUB", True), 1, "int8"),
    "sub_conv": (_binary_after_conv("SUB"), 1, "int8"),
    "maximum": (_two_inputs("MAXIMUM", False), 1, "int8"),
    "minimum_bcast": (_two_inputs("MINIMUM", True), 1, "int8"),
    "strided_slice": (_strided_slice, 2, "int8"),
    "strided_slice_neg": (_strided_slice_neg, 1, "int8"),
    "transpose_conv": (_transpose_conv, 2, "int8"),
    "expand_squeeze": (_expand_squeeze, 1, "int8"),
    "conv16": (_conv16, 2, "16x8io"),
    "dwconv16": (_dwconv16, 1, "16x8io"),
    "dense16": (_dense16, 1, "16x8io"),
    "add16": (_binary_after_conv("ADD"), 1, "16x8io"),
    "add_const16": (_add_const16, 1, "16x8io"),
    "sub16": (_two_inputs("SUB", True), 2, "16x8io"),
    "mul16": (_binary_after_conv("MUL"), 1, "16x8io"),
    "pad_leaky16": (_pad_leaky16, 1, "16x8io"),
    "transpose_conv16": (_transpose_conv, 1, "16x8io"),
}
PARAMS = [(case, seed) for case, (_, n, _) in CASES.items() for seed in range(n)]


def convert(case: str, seed: int) -> tuple[bytes, list[str]]:
    """Keras model -> quantized .tflite (several inputs; int8 or 16x8)."""
    import keras
    import tensorflow as tf

    from tinydeploy.quantization import _quiet_convert, _quiet_python

    builder, _, scheme = CASES[case]
    rng = np.random.default_rng(1000 * seed + sum(map(ord, case)))
    keras.utils.set_random_seed(seed)
    model, expect = builder(keras, rng)
    _randomize(model, rng)
    scale = float(rng.uniform(0.5, 3.0))
    shapes = [tuple(t.shape[1:]) for t in model.inputs]
    specs = [tf.TensorSpec([1, *s], tf.float32, name=f"in{k}") for k, s in enumerate(shapes)]
    fn = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False),
                     input_signature=specs)
    with _quiet_python():
        conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]

    def rep() -> Any:
        for _ in range(40):
            yield [rng.normal(0, scale, size=(1, *s)).astype(np.float32) for s in shapes]

    conv.representative_dataset = rep
    if scheme == "int8":
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io = tf.int8
    else:
        conv.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        io = tf.int16 if scheme == "16x8io" else tf.int8
    conv.inference_input_type = io
    conv.inference_output_type = io
    return _quiet_convert(conv), expect


STORED = Path(__file__).parent / "data" / "ext_ops"


def build_model(case: str, seed: int) -> bytes:
    data, _ = convert(case, seed)
    return _as_expand_squeeze(data) if case == "expand_squeeze" else data


EXPECTED = {"sub_inputs": ["SUB"], "sub_bcast": ["SUB"], "sub_conv": ["SUB"],
            "maximum": ["MAXIMUM"], "minimum_bcast": ["MINIMUM"],
            "strided_slice": ["STRIDED_SLICE"], "strided_slice_neg": ["STRIDED_SLICE"],
            "transpose_conv": ["TRANSPOSE_CONV"],
            "expand_squeeze": ["EXPAND_DIMS", "SQUEEZE"], "conv16": ["CONV_2D"],
            "dwconv16": ["DEPTHWISE_CONV_2D"], "dense16": ["FULLY_CONNECTED", "RESHAPE"],
            "add16": ["ADD"], "add_const16": ["ADD"], "sub16": ["SUB"], "mul16": ["MUL"],
            "pad_leaky16": ["LEAKY_RELU", "PAD"], "transpose_conv16": ["TRANSPOSE_CONV"]}


def _expected(case: str) -> list[str]:
    return EXPECTED[case]


@pytest.fixture(scope="session")
def ext_models(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, int], Path]:
    root = tmp_path_factory.mktemp("cruntime_ext_ops")
    cache: dict[tuple[str, int], Path] = {}

    def get(case: str, seed: int) -> Path:
        if (case, seed) not in cache:
            stored = STORED / f"{case}_{seed}.tflite"
            if stored.is_file():  # converted once (see __main__ below): no TF in CI
                path, expect = stored, _expected(case)
            else:
                path = root / f"{case}_{seed}.tflite"
                path.write_bytes(build_model(case, seed))
                expect = _expected(case)
            ops = load(path).op_names
            assert set(expect) <= set(ops), f"converter produced {ops}, wanted {expect}"
            cache[(case, seed)] = path
        return cache[(case, seed)]

    return get


def _shape(t: Any) -> tuple[int, ...]:
    """A sample's shape: without the batch axis when it is 1 (else the whole tensor)."""
    return tuple(t.shape[1:]) if t.shape and t.shape[0] == 1 else tuple(t.shape)


def _random_inputs(facts: ModelFacts, n: int, seed: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    per_tensor = []
    for t in facts.inputs:
        info = np.iinfo(t.numpy_dtype)
        x = rng.integers(info.min, info.max + 1, size=(n, *_shape(t))).astype(t.numpy_dtype)
        x[0], x[1] = info.min, info.max
        x[2] = t.zero_point or 0
        per_tensor.append(x)
    return [[x[k] for x in per_tensor] for k in range(n)]


def _tflm(facts: ModelFacts, samples: list[list[np.ndarray]],
          reset: bool = True) -> list[list[np.ndarray]]:
    """The TFLM Python runtime, Reset() before every sample (or one sequence)."""
    needs_tflm.require_tflm()
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(facts.data, arena_size=1 << 20)
    out = []
    for s in samples:
        if reset:
            interp.reset()
        for k, (x, t) in enumerate(zip(s, facts.inputs, strict=True)):
            interp.set_input(x.reshape(t.shape), k)
        interp.invoke()
        out.append([np.array(interp.get_output(k)).reshape(_shape(t))
                    for k, t in enumerate(facts.outputs)])
    return out


@pytest.mark.parametrize(("case", "seed"), PARAMS, ids=[f"{c}-{s}" for c, s in PARAMS])
def test_ext_op_bit_exact(ext_models: Callable[[str, int], Path], case: str, seed: int,
                          tmp_path: Path) -> None:
    facts = check(ext_models(case, seed))  # the guard accepts every one of them
    scheme = CASES[case][2]
    assert facts.quantization == ("int8" if scheme == "int8" else "16x8")
    res = generate_c(facts, tmp_path / "c", tflm_arena=False)
    binary = build_harness(res.out_dir)
    samples = _random_inputs(facts, 32, seed)
    outs = [(_shape(t), t.numpy_dtype) for t in facts.outputs]
    got = run_harness_bytes(binary, samples, outs, reset=True)
    ref = _tflm(facts, samples)
    for k, (g, r) in enumerate(zip(got, ref, strict=True)):
        for j, (a, b) in enumerate(zip(g, r, strict=True)):
            bad = np.argwhere(a != b)
            assert bad.size == 0, (
                f"{case}-{seed} {facts.op_names}: sample {k} output {j}: {len(bad)} values "
                f"differ, first at {bad[0].tolist()}: C {a[tuple(bad[0])]} vs TFLM "
                f"{b[tuple(bad[0])]}")


def random_lstm(seed: int, sizes: tuple[int, int, int, int] | None = None,
                big_bias: bool = False, cell_act: int = 4, w_scale_div: float = 1.0) -> bytes:
    """TFLM's int8 LSTM (trained_lstm_int8's UNIDIRECTIONAL_SEQUENCE_LSTM) with random
    sizes, weights, biases, scales, cell-state scale, clip and batch: Keras 3 converts its
    LSTM layer to a WHILE loop, so the fused int8 operator is built here from the public
    model's layout. ``sizes``: (batch, steps, n_in, n_state) instead of random ones;
    ``big_bias``: one input-gate bias of 2^30 - 1 (too large for the kernel's fast
    requantization: the layer takes TFLM's general one); ``cell_act``: the fused (cell)
    activation, schema ActivationFunctionType (4: TANH); ``w_scale_div``: weight scales
    divided by it (small ones: every gate multiplier below 1/2, no left shift)."""
    import flatbuffers

    from tinydeploy.tflm_py import schema

    rng = np.random.default_rng(100 + seed)
    data = (Path(__file__).parent / "data" / "trained_lstm_int8.tflite").read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytearray(data), 0))
    sub = model.subgraphs[0]
    lstm = sub.operators[0]
    batch, steps = int(rng.integers(1, 3)), int(rng.integers(2, 7))
    n_in, n_state = int(rng.integers(2, 10)), int(rng.integers(2, 12))
    if sizes is not None:
        batch, steps, n_in, n_state = sizes

    def tensor(i: int, shape: list[int], values: np.ndarray | None, scale: float,
               zp: int = 0) -> None:
        t = sub.tensors[i]
        t.shape = shape
        t.quantization.scale, t.quantization.zeroPoint = [scale], [zp]
        if values is not None:
            buf = schema.BufferT()
            buf.data = list(np.ascontiguousarray(values).tobytes())
            model.buffers.append(buf)
            t.buffer = len(model.buffers) - 1

    x_scale, h_scale = float(rng.uniform(0.002, 0.05)), float(rng.uniform(0.003, 0.02))
    tensor(lstm.inputs[0], [batch, steps, n_in], None, x_scale, int(rng.integers(-128, 128)))
    for k in range(1, 9):  # input-to-gate (n_state x n_in) and recurrent (n_state x n_state)
        cols = n_in if k <= 4 else n_state
        w = rng.integers(-127, 128, size=(n_state, cols)).astype(np.int8)
        tensor(lstm.inputs[k], [n_state, cols], w,
               float(rng.uniform(0.002, 0.02)) / w_scale_div)
    for k in range(12, 16):
        b = rng.integers(-20000, 20000, size=n_state).astype(np.int32)
        if big_bias and k == 12:
            b[0] = 2 ** 30 - 1
        tensor(lstm.inputs[k], [n_state], b, x_scale * 0.01)
    h_zp = int(rng.integers(-20, 20))
    tensor(lstm.inputs[18], [batch, n_state], None, h_scale, h_zp)
    tensor(lstm.inputs[19], [batch, n_state], None, 2.0 ** -int(rng.integers(10, 15)))
    out = lstm.outputs[0]
    tensor(out, [batch, steps, n_state], None, h_scale, h_zp)
    lstm.builtinOptions.cellClip = float(rng.choice([0.0, 3.0, 10.0]))
    lstm.builtinOptions.fusedActivationFunction = cell_act
    sub.operators = [lstm]
    sub.outputs = [out]
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# id: (seed, sizes, big_bias, w_scale_div, the kernel's requantization: emit_lstm.STEP_FN)
LSTM_CASES: dict[str, tuple[int, tuple[int, int, int, int] | None, bool, float, int]] = {
    "0": (0, None, False, 1.0, 1), "1": (1, None, False, 1.0, 1), "2": (2, None, False, 1.0, 1),
    "wide": (3, (2, 4, 37, 13), False, 1.0, 1),  # 9 four-column blocks + tails, 2 rows
    "general": (4, (1, 5, 16, 8), True, 1.0, 0),  # TFLM's requantization
    "right-shifts": (5, (1, 6, 21, 10), False, 16.0, 2),  # fast, every shift negative
}


@pytest.mark.parametrize("case", LSTM_CASES)
def test_random_lstm_bit_exact(case: str, tmp_path: Path) -> None:
    """Random LSTMs (input and hidden zero points non-zero: the kernel's folded biases)
    equal TFLM, with and without Reset() between samples, with each requantization form."""
    seed, sizes, big_bias, w_div, want_fast = LSTM_CASES[case]
    facts = check(random_lstm(seed, sizes, big_bias, w_scale_div=w_div))
    assert facts.op_names == ["UNIDIRECTIONAL_SEQUENCE_LSTM"] and facts.stateful
    res = generate_c(facts, tmp_path / "c", tflm_arena=False)
    steps = re.findall(r"\btd_lstm_step_\w+", (res.out_dir / "td_model.c").read_text())
    assert steps == [STEP_FN[want_fast]]
    binary = build_harness(res.out_dir)
    samples = _random_inputs(facts, 24, seed)
    outs = [(_shape(t), t.numpy_dtype) for t in facts.outputs]
    for reset in (True, False):  # Reset() before each sample, or one long sequence
        got = run_harness_bytes(binary, samples, outs, reset=reset)
        ref = _tflm(facts, samples, reset=reset)
        for k, (g, r) in enumerate(zip(got, ref, strict=True)):
            np.testing.assert_array_equal(g[0], r[0], err_msg=f"sample {k} reset={reset}")


def test_lstm_cell_activation_other_than_tanh_refused(tmp_path: Path) -> None:
    """The schema has no SIGMOID: TFLM reads 6 as no activation and asserts, so the C
    runtime refuses the layer (one line naming it) instead of guessing."""
    facts = check(random_lstm(5, cell_act=6))
    with pytest.raises(TinyDeployError, match="LSTM cell activation 6"):
        generate_c(facts, tmp_path / "c", tflm_arena=False)
    assert not (tmp_path / "c").exists()


def _append_quantize(data: bytes, out_type: int, scale: float, zero_point: int) -> bytes:
    """The model with one more operator: QUANTIZE of its output to int8 (9) or int16 (7)."""
    import flatbuffers

    from tinydeploy.tflm_py import schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytearray(data), 0))
    sub = model.subgraphs[0]
    old = sub.tensors[int(sub.outputs[0])]
    new = schema.TensorT()
    new.name, new.type, new.shape = b"requantized", out_type, list(old.shape)
    new.quantization = schema.QuantizationParametersT()
    new.quantization.scale, new.quantization.zeroPoint = [scale], [zero_point]
    model.buffers.append(schema.BufferT())
    new.buffer = len(model.buffers) - 1
    sub.tensors.append(new)
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.QUANTIZE
    code.version = 2
    model.operatorCodes.append(code)
    op = schema.OperatorT()
    op.opcodeIndex = len(model.operatorCodes) - 1
    op.inputs, op.outputs = [int(sub.outputs[0])], [len(sub.tensors) - 1]
    sub.operators.append(op)
    sub.outputs = [len(sub.tensors) - 1]
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.mark.parametrize(("base", "out_type", "scale", "zp"), [
    ("seanet_conv0", 9, 0.031, 5),      # int16 -> int8
    ("seanet_conv0", 7, 0.00071, 0),    # int16 -> int16
    ("tanh_mlp", 7, 0.000123, 0),       # int8 -> int16
])
def test_quantize_int8_int16_bit_exact(base: str, out_type: int, scale: float, zp: int,
                                       tmp_path: Path) -> None:
    data = (Path(__file__).parent / "data" / f"{base}.tflite").read_bytes()
    facts = load(_append_quantize(data, out_type, scale, zp))
    assert facts.op_names[-1] == "QUANTIZE"
    res = generate_c(facts, tmp_path / "c", tflm_arena=False)
    binary = build_harness(res.out_dir)
    samples = _random_inputs(facts, 24, 5)
    outs = [(_shape(t), t.numpy_dtype) for t in facts.outputs]
    got = run_harness_bytes(binary, samples, outs, reset=True)
    for g, r in zip(got, _tflm(facts, samples), strict=True):
        np.testing.assert_array_equal(g[0], r[0])


if __name__ == "__main__":  # regenerate tests/data/ext_ops/*.tflite (TensorFlow converter)
    STORED.mkdir(parents=True, exist_ok=True)
    for case_, seed_ in PARAMS:
        (STORED / f"{case_}_{seed_}.tflite").write_bytes(build_model(case_, seed_))
        print(case_, seed_)


def test_slice_copy_plan_matches_numpy() -> None:
    """td_strided_slice's merged-run plan (emit_ext.slice_copy_plan), walked as the C loop
    walks it, reads exactly the elements numpy's slicing selects (any element size)."""
    from tinydeploy.cruntime.emit_ext import slice_copy_plan

    rng = np.random.default_rng(0)
    for _ in range(1500):
        shape = [int(v) for v in rng.integers(1, 6, size=int(rng.integers(1, 6)))]
        es = int(rng.choice([1, 2, 4]))
        start, count, step = [], [], []
        for n in shape:
            lo, st = ((0, 1) if rng.random() < 0.4 else
                      (int(rng.integers(0, n)), int(rng.choice([1, 2, 3, -1]))))
            avail = len(range(lo, n, st) if st > 0 else range(lo, -1, st))
            start.append(lo)
            step.append(st)
            count.append(avail if rng.random() < 0.5 else int(rng.integers(1, avail + 1)))
        x = rng.integers(0, 256, size=(*shape, es), dtype=np.uint8)
        pick = tuple(np.array([start[d] + i * step[d] for i in range(count[d])]).reshape(
            [-1 if k == d else 1 for k in range(len(shape))]) for d in range(len(shape)))
        flat, p = x.reshape(-1), slice_copy_plan(shape, start, count, step, es)
        src, out, idx = p["base"], [], [0] * 5
        while True:
            for i in range(p["inner_n"]):
                o = src + i * p["inner_step"]
                out += list(flat[o:o + p["run"]])
            d = 4
            while d >= 0:
                src += p["step"][d]
                idx[d] += 1
                if idx[d] < p["count"][d]:
                    break
                src -= p["step"][d] * p["count"][d]
                idx[d] = 0
                d -= 1
            if d < 0:
                break
        assert np.array_equal(np.array(out, np.uint8), x[pick].reshape(-1)), (shape, start,
                                                                               count, step, p)


def test_permute_plan_matches_numpy() -> None:
    """td_permute's loops (emit_gather.permute_plan), walked as the C loop walks them, put
    every input element where numpy's transpose puts it (any element size); the plan is
    taken only where the gather would copy single elements in shorter rows."""
    from tinydeploy.cruntime.emit_gather import permute_plan

    rng = np.random.default_rng(1)
    taken = 0
    for _ in range(600):
        shape = tuple(int(v) for v in rng.integers(1, 7, size=int(rng.integers(2, 6))))
        perm = [int(v) for v in rng.permutation(len(shape))]
        es = int(rng.choice([1, 2, 4]))
        p = permute_plan(shape, perm, es)
        if p is None:
            continue
        taken += 1
        x = rng.integers(0, 256, size=(*shape, es), dtype=np.uint8)
        want = np.transpose(x, [*perm, len(shape)]).reshape(-1)
        flat, out = x.reshape(-1), np.zeros(x.size, np.uint8)
        for idx in np.ndindex(*p["count"]):
            s = sum(i * st for i, st in zip(idx, p["src_step"], strict=True))
            d = sum(i * st for i, st in zip(idx, p["dst_step"], strict=True))
            out[d:d + es] = flat[s:s + es]
        assert out.tobytes() == want.tobytes(), (shape, perm, es, p)
    assert taken > 100
    assert permute_plan((1, 3, 3, 160), [0, 3, 1, 2], 1) is not None  # MCUNet's NHWC->NCHW
    assert permute_plan((1, 3, 3, 160), [0, 2, 1, 3], 1) is None  # rows of C: the gather
