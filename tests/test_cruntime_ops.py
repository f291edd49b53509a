"""Random per-operator models: the C runtime equals the TFLM Python runtime byte for byte.

Tiny Keras models (random shapes, strides, paddings, dilations, activations, random weights
and biases, several seeds) are converted to full int8 (int8 I/O, batch 1) with a random
representative data set, once per session. Each is generated as C, compiled once with a
stdin/stdout harness and run on random int8 inputs next to ``HostModel``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import needs_tflm
import numpy as np
import pytest

from tinydeploy.cruntime import generate_c
from tinydeploy.cruntime.harness import build_harness, run_harness
from tinydeploy.facts import load
from tinydeploy.hostref import HostModel

Builder = Callable[[Any, np.random.Generator], tuple[Any, list[str]]]
ACTS = [None, "relu", "relu6"]


def _img(keras: Any, rng: np.random.Generator, hw: tuple[int, int] = (5, 10),
         c: tuple[int, int] = (1, 5)) -> Any:
    h, w = (int(v) for v in rng.integers(hw[0], hw[1], size=2))
    return keras.Input((h, w, int(rng.integers(*c))), batch_size=1)


def _conv(k: Any, r: np.random.Generator) -> tuple[Any, list[str]]:
    x = _img(k, r)
    stride = int(r.integers(1, 3))
    dil = int(r.integers(1, 3)) if stride == 1 else 1
    kh, kw = (int(v) for v in r.integers(1, 4, size=2))
    y = k.layers.Conv2D(int(r.integers(1, 7)), (kh, kw), strides=stride, dilation_rate=dil,
                        padding=str(r.choice(["same", "valid"])),
                        activation=ACTS[int(r.integers(3))])(x)
    return k.Model(x, y), ["CONV_2D"]


def _conv_1x1c1(k: Any, r: np.random.Generator) -> tuple[Any, list[str]]:
    """An unpadded 1x1 convolution of one channel (td_conv2d_fast's own loop for it)."""
    x = _img(k, r, c=(1, 2))
    y = k.layers.Conv2D(int(r.integers(1, 11)), 1, strides=int(r.integers(1, 3)),
                        activation=ACTS[int(r.integers(3))])(x)
    return k.Model(x, y), ["CONV_2D"]


def _transpose(k: Any, r: np.random.Generator) -> tuple[Any, list[str]]:
    """A Permute of a conv's output (TRANSPOSE: the permutation kernel or the gather)."""
    x = _img(k, r, (2, 6))
    y = k.layers.Conv2D(int(r.integers(3, 12)), 1)(x)
    perm = [(3, 1, 2), (2, 3, 1), (3, 2, 1), (2, 1, 3)][int(r.integers(4))]
    return k.Model(x, k.layers.Permute(perm)(y)), ["TRANSPOSE"]


def _dwconv(k: Any, r: np.random.Generator) -> tuple[Any, list[str]]:
    x = _img(k, r)
    stride = int(r.integers(1, 3))
    dil = int(r.integers(1, 3)) if stride == 1 else 1
    y = k.layers.DepthwiseConv2D(int(r.integers(2, 4)), strides=stride, dilation_rate=dil,
                                 depth_multiplier=int(r.integers(1, 9)),
                                 padding=str(r.choice(["same", "valid"])),
                                 activation=ACTS[int(r.integers(3))])(x)
    return k.Model(x, y), ["DEPTHWISE_CONV_2D"]


def _dense(k: Any, r: np.random.Generator) -> tuple[Any, list[str]]:
    x = k.Input((int(r.integers(2, 20)),), batch_size=1)
    y = k.layers.Dense(int(r.integers(1, 12)), activation=ACTS[int(r.integers(3))])(x)
    return k.Model(x, y), ["FULLY_CONNECTED"]


def _dense_3d(k: Any, r: np.random.Generator) -> tuple[Any, list[str]]:
    """Dense on a sequence: FULLY_CONNECTED over several rows (batches > 1 in the kernel)."""
    x = k.Input((int(r.integers(2, 6)), int(r.integers(2, 9))), batch_size=1)
    y = k.layers.Dense(int(r.integers(1, 8)), activation=ACTS[int(r.integers(3))])(x)
    return k.Model(x, y), ["FULLY_CONNECTED"]


def _pool(kind: str) -> Builder:
    def build(k: Any, r: np.random.Generator) -> tuple[Any, list[str]]:
        x = _img(k, r)
        layer = k.layers.MaxPooling2D if kind == "MAX_POOL_2D" else k.layers.AveragePooling2D
        y = layer(int(r.integers(2, 4)), strides=int(r.integers(1, 3)),
                  padding=str(r.choice(["same", "valid"])))(x)
        return k.Model(x, y), [kind]
    return build


def _softmax(k: Any, r: np.random.Generator) -> tuple[Any, list[str]]:
    x = _img(k, r, (2, 5))
    y = k.layers.Conv2D(int(r.integers(2, 9)), 1)(x)
    y = k.layers.Softmax()(y)
    return k.Model(x, y), ["SOFTMAX"]


def _binary(kind: str, broadcast: bool) -> Builder:
    def build(k: Any, r: np.random.Generator) -> tuple[Any, list[str]]:
        x = _img(k, r, (3, 7))
        a = k.layers.Conv2D(int(r.integers(1, 5)), 1)(x)
        if broadcast:  # (1,1,1,C), (1,H,1,C), (1,1,W,C) or (1,H,W,1) against (1,H,W,C)
            axes = [(1, 2), (2,), (1,), (3,)][int(r.integers(4))]
            b = k.layers.Lambda(lambda t: k.ops.mean(t, axis=axes, keepdims=True))(a)
        else:
            b = k.layers.Conv2D(a.shape[-1], 3, padding="same")(x)
        layer = k.layers.Add() if kind == "ADD" else k.layers.Multiply()
        pair = [b, a] if r.integers(2) else [a, b]
        return k.Model(x, layer(pair)), [kind]
    return build


def _act(name: str, fn: Callable[[Any, np.random.Generator], Any]) -> Builder:
    def build(k: Any, r: np.random.Generator) -> tuple[Any, list[str]]:
        x = _img(k, r, (3, 7))
        y = k.layers.Conv2D(int(r.integers(1, 5)), 1)(x)
        return k.Model(x, fn(k, r)(y)), [name]
    return build


def _input_act(name: str, fn: Callable[[Any, np.random.Generator], Any]) -> Builder:
    def build(k: Any, r: np.random.Generator) -> tuple[Any, list[str]]:
        x = _img(k, r, (3, 7))
        return k.Model(x, k.layers.Conv2D(2, 1)(fn(k, r)(x))), [name]
    return build


def _concat(k: Any, r: np.random.Generator) -> tuple[Any, list[str]]:
    x = _img(k, r, (3, 7))
    axis = int(r.choice([1, 2, 3, -1]))
    parts = [k.layers.Conv2D(int(r.integers(1, 4)) if axis in (3, -1) else 3, 1)(x)
             for _ in range(int(r.integers(2, 4)))]
    return k.Model(x, k.layers.Concatenate(axis=axis)(parts)), ["CONCATENATION"]


def _pad(k: Any, r: np.random.Generator) -> tuple[Any, list[str]]:
    x = _img(k, r, (3, 7))
    y = k.layers.Conv2D(int(r.integers(1, 4)), 1)(x)
    pads = ((int(r.integers(1, 3)), int(r.integers(0, 3))),
            (int(r.integers(0, 3)), int(r.integers(1, 3))))
    y = k.layers.ZeroPadding2D(pads)(y)
    return k.Model(x, k.layers.Conv2D(2, 2)(y)), ["PAD"]


def _mean(k: Any, r: np.random.Generator) -> tuple[Any, list[str]]:
    x = _img(k, r, (3, 7))
    y = k.layers.Conv2D(int(r.integers(2, 5)), 1)(x)
    axes = [(1, 2), (1,), (2,), (3,), (1, 2, 3), (2, 3)][int(r.integers(6))]
    keep = bool(r.integers(2))
    y = k.layers.Lambda(lambda t: k.ops.mean(t, axis=axes, keepdims=keep))(y)
    return k.Model(x, y), ["MEAN"]


def _reshape(k: Any, r: np.random.Generator) -> tuple[Any, list[str]]:
    x = _img(k, r, (3, 7))
    y = k.layers.Conv2D(2, 1)(x)
    y = k.layers.Flatten()(y)
    return k.Model(x, k.layers.Dense(3)(y)), ["RESHAPE"]


def _chain(k: Any, r: np.random.Generator) -> tuple[Any, list[str]]:
    """Several layers in a row: intermediate tensors live in the arena, outputs overlap
    their dying inputs (exercises the planner's in-place placement)."""
    x = _img(k, r, (6, 12), (1, 4))

    def pad() -> str:
        return str(r.choice(["same", "valid"]))

    y = k.layers.Conv2D(int(r.integers(2, 6)), int(r.integers(1, 4)), padding=pad(),
                        strides=int(r.integers(1, 3)), activation="relu")(x)
    y = k.layers.DepthwiseConv2D(3, padding="same", dilation_rate=int(r.integers(1, 3)),
                                 depth_multiplier=int(r.integers(1, 3)))(y)
    y = k.layers.ZeroPadding2D(((1, int(r.integers(0, 2))), (int(r.integers(0, 2)), 1)))(y)
    pool = k.layers.MaxPooling2D if r.integers(2) else k.layers.AveragePooling2D
    y = pool(2, strides=int(r.integers(1, 3)), padding="same")(y)
    z = k.layers.Conv2D(y.shape[-1], 1)(y)
    y = k.layers.Add()([y, z])
    y = k.layers.Activation("tanh")(y)
    y = k.layers.Conv2D(int(r.integers(2, 6)), 2, padding="same")(y)
    return k.Model(x, y), ["CONV_2D", "DEPTHWISE_CONV_2D", "PAD", "ADD"]


def _leaky(k: Any, r: np.random.Generator) -> Any:
    return k.layers.LeakyReLU(negative_slope=float(r.uniform(0.05, 0.5)))


CASES: dict[str, tuple[Builder, int]] = {
    "conv": (_conv, 6),
    "conv_1x1c1": (_conv_1x1c1, 3),
    "transpose": (_transpose, 4),
    "dwconv": (_dwconv, 5),
    "dense": (_dense, 3),
    "dense_3d": (_dense_3d, 2),
    "maxpool": (_pool("MAX_POOL_2D"), 3),
    "avgpool": (_pool("AVERAGE_POOL_2D"), 3),
    "softmax": (_softmax, 2),
    "add": (_binary("ADD", False), 2),
    "add_bcast": (_binary("ADD", True), 4),
    "mul": (_binary("MUL", False), 2),
    "mul_bcast": (_binary("MUL", True), 3),
    "logistic": (_act("LOGISTIC", lambda k, r: k.layers.Activation("sigmoid")), 2),
    "tanh": (_act("TANH", lambda k, r: k.layers.Activation("tanh")), 2),
    "concat": (_concat, 3),
    "pad": (_pad, 2),
    "mean": (_mean, 4),
    "reshape": (_reshape, 1),
    "relu": (_input_act("RELU", lambda k, r: k.layers.ReLU()), 1),
    "relu6": (_input_act("RELU6", lambda k, r: k.layers.ReLU(max_value=6.0)), 1),
    "leaky_relu": (_act("LEAKY_RELU", _leaky), 2),
    "hard_swish": (_act("HARD_SWISH", lambda k, r: k.layers.Activation("hard_swish")), 2),
    "chain": (_chain, 4),
}
PARAMS = [(case, seed) for case, (_, n) in CASES.items() for seed in range(n)]


def _randomize(model: Any, rng: np.random.Generator) -> None:
    for layer in model.layers:
        ws = layer.get_weights()
        if ws:
            layer.set_weights([rng.normal(0, 0.6, size=w.shape).astype(np.float32) for w in ws])


def convert(case: str, seed: int) -> tuple[bytes, list[str]]:
    import keras

    from tinydeploy.quantization import to_tflite

    rng = np.random.default_rng(1000 * seed + sum(map(ord, case)))
    keras.utils.set_random_seed(seed)
    model, expect = CASES[case][0](keras, rng)
    _randomize(model, rng)
    scale = float(rng.uniform(0.5, 3.0))
    rep = rng.normal(0, scale, size=(40, *model.input_shape[1:])).astype(np.float32)
    return to_tflite(model, rep), expect


@pytest.fixture(scope="session")
def op_models(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, int], Path]:
    root = tmp_path_factory.mktemp("cruntime_ops")
    cache: dict[tuple[str, int], Path] = {}

    def get(case: str, seed: int) -> Path:
        if (case, seed) not in cache:
            data, expect = convert(case, seed)
            path = root / f"{case}_{seed}.tflite"
            path.write_bytes(data)
            ops = load(path).op_names
            assert set(expect) <= set(ops), f"converter produced {ops}, wanted {expect}"
            cache[(case, seed)] = path
        return cache[(case, seed)]

    return get


@pytest.mark.parametrize(("case", "seed"), PARAMS, ids=[f"{c}-{s}" for c, s in PARAMS])
@needs_tflm.mark
def test_op_bit_exact(op_models: Callable[[str, int], Path], case: str, seed: int,
                      tmp_path: Path) -> None:
    facts = load(op_models(case, seed))
    res = generate_c(facts, tmp_path / "c", tflm_arena=False)
    binary = build_harness(res.out_dir)
    t_in = facts.inputs[0]
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(48, *t_in.shape[1:]), dtype=np.int8)
    x[0] = -128
    x[1] = 127
    x[2] = t_in.zero_point
    y = run_harness(binary, x, facts.outputs[0].shape[1:])
    ref = HostModel(facts).predict(x).reshape(y.shape)
    bad = np.argwhere(y != ref)
    assert bad.size == 0, (f"{case}-{seed} {facts.op_names}: {len(bad)} bytes differ, first at "
                           f"{bad[0].tolist()}: C {y[tuple(bad[0])]} vs TFLM {ref[tuple(bad[0])]}")


def _append_quantize(facts: Any, scale: float, zero_point: int, out_type: int = 9,
                     op_name: str | None = None) -> bytes:
    """The model with one more operator: QUANTIZE (requantize) of its output (``op_name``:
    that operator instead, e.g. RELU, its output quantized like its input)."""
    import copy

    import flatbuffers

    from tinydeploy.tflm_py import schema

    model = copy.deepcopy(facts.model)
    sub = model.subgraphs[0]
    old = sub.tensors[int(sub.outputs[0])]
    new = copy.deepcopy(old)
    new.name = b"requantized"
    new.type = out_type
    if op_name is None:
        new.quantization.scale = [scale] if out_type == 9 else None
        new.quantization.zeroPoint = [zero_point] if out_type == 9 else None
    model.buffers.append(schema.BufferT())
    new.buffer = len(model.buffers) - 1
    sub.tensors.append(new)
    code = schema.OperatorCodeT()
    name = op_name or ("QUANTIZE" if out_type == 9 else "DEQUANTIZE")
    code.builtinCode = getattr(schema.BuiltinOperator, name)
    code.deprecatedBuiltinCode = code.builtinCode
    code.version = 1
    model.operatorCodes.append(code)
    op = schema.OperatorT()
    op.opcodeIndex = len(model.operatorCodes) - 1
    op.inputs = [int(sub.outputs[0])]
    op.outputs = [len(sub.tensors) - 1]
    sub.operators.append(op)
    sub.outputs = [len(sub.tensors) - 1]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.mark.parametrize(("scale", "zp"), [(0.0131, 7), (0.5, -100), (0.00391, -128)])
@needs_tflm.mark
def test_quantize_requantize_bit_exact(scale: float, zp: int, tmp_path: Path) -> None:
    base = load(Path(__file__).parent / "data" / "tanh_mlp.tflite")
    facts = load(_append_quantize(base, scale, zp))
    assert facts.op_names[-1] == "QUANTIZE"
    res = generate_c(facts, tmp_path / "c", tflm_arena=False)
    binary = build_harness(res.out_dir)
    x = np.random.default_rng(3).integers(-128, 128, size=(64, *facts.inputs[0].shape[1:]),
                                          dtype=np.int8)
    y = run_harness(binary, x, facts.outputs[0].shape[1:])
    np.testing.assert_array_equal(y, HostModel(facts).predict(x).reshape(y.shape))


@needs_tflm.mark
def test_dequantized_float_output_bit_exact(tmp_path: Path) -> None:
    base = load(Path(__file__).parent / "data" / "sine_mlp.tflite")
    facts = load(_append_quantize(base, 0.0, 0, out_type=0))  # DEQUANTIZE -> float32
    assert facts.op_names[-1] == "DEQUANTIZE" and facts.outputs[0].dtype == "FLOAT32"
    res = generate_c(facts, tmp_path / "c", tflm_arena=False)
    binary = build_harness(res.out_dir)
    x = np.arange(-128, 128, dtype=np.int8).reshape(256, 1)
    y = run_harness(binary, x, facts.outputs[0].shape[1:], "float32")
    ref = HostModel(facts).predict(x).reshape(y.shape)
    np.testing.assert_array_equal(y.view(np.uint32), ref.astype(np.float32).view(np.uint32))


@needs_tflm.mark
def test_float_io_model_bit_exact(tmp_path: Path) -> None:
    import keras

    from tinydeploy.quantization import to_tflite

    rng = np.random.default_rng(5)
    x_in = keras.Input((6, 5, 2), batch_size=1)
    y = keras.layers.Conv2D(3, 3, padding="same", activation="relu")(x_in)
    y = keras.layers.Flatten()(y)
    model = keras.Model(x_in, keras.layers.Dense(4)(y))
    _randomize(model, rng)
    rep = rng.normal(0, 1.5, size=(40, 6, 5, 2)).astype(np.float32)
    facts = load(to_tflite(model, rep, io_type="float32"))
    assert facts.inputs[0].dtype == facts.outputs[0].dtype == "FLOAT32"
    assert {"QUANTIZE", "DEQUANTIZE"} <= set(facts.op_names)
    res = generate_c(facts, tmp_path / "c", tflm_arena=False)
    binary = build_harness(res.out_dir)
    x = rng.normal(0, 2.0, size=(64, 6, 5, 2)).astype(np.float32)
    x[0] = 0.0
    x[1, 0, 0, 0] = 1e4  # saturates int8 (beyond int32 TFLM's float->int cast is undefined)
    x[2, 0, 0, 1] = -1e4
    y = run_harness(binary, x, facts.outputs[0].shape[1:], "float32")
    ref = HostModel(facts).predict(x).reshape(y.shape).astype(np.float32)
    np.testing.assert_array_equal(y.view(np.uint32), ref.view(np.uint32))


def test_float_input_into_other_op_refused(tmp_path: Path) -> None:
    from tinydeploy.errors import TinyDeployError

    facts = load(Path(__file__).parent / "data" / "sine_mlp.tflite")
    sub = facts.model.subgraphs[0]
    sub.tensors[int(sub.inputs[0])].type = 0  # FLOAT32 straight into FULLY_CONNECTED
    with pytest.raises(TinyDeployError) as err:
        generate_c(facts, tmp_path / "c", tflm_arena=False)
    assert err.value.code == "model_rejected" and "FLOAT32" in str(err.value)
    assert not (tmp_path / "c").exists()


def test_one_channel_pointwise_takes_its_kernel(op_models: Callable[[str, int], Path],
                                                tmp_path: Path) -> None:
    """The conv_1x1c1 cases (bit-exact above, on qemu-cm4 in test_cruntime_cm4.py) really
    run td_conv2d_1x1c1 (variants.py), not the general td_conv2d_fast."""
    for seed in range(CASES["conv_1x1c1"][1]):
        res = generate_c(load(op_models("conv_1x1c1", seed)), tmp_path / str(seed),
                         tflm_arena=False)
        assert "td_conv2d_1x1c1(&" in (res.out_dir / "td_model.c").read_text(), seed
