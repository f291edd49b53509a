"""tinydeploy's TFLM FULLY_CONNECTED kernel (firmware/td_tflm_fc.cpp) is bit-exact with
current TFLM's reference kernel (the TFLM Python runtime) on random int8 layers.

No TFLM tree is needed: tests/tflm_host/fc_harness.cpp plays the interpreter for one node
over the stand-in headers of tests/stubs (MicroContext temp tensors in Prepare, eval tensors
in Eval) and compiles with -Wall -Wextra -Werror. The layers cover per-channel and
per-tensor weights, with and without bias, every fused activation with an integer range,
keep_num_dims and several batches, channels whose multiplier has a shift >= 0 (the general
requantization form) or flushes to 0, odd depths, and a per-tensor weight zero point (TFLM's
reference loop). The kernel's per-channel tables fit exactly the pool the generator counts
(tflm_overrides), so it takes only its OpData from the arena; without a pool it takes the
arena and computes the same.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tinydeploy.facts import load
from tinydeploy.tflm_overrides import _fc_pool_words, pack

ROOT = Path(__file__).resolve().parent.parent
FW = ROOT / "firmware"
STUBS = ROOT / "tests" / "stubs"
WARN = ["-Wall", "-Wextra", "-Werror"]
needs_gcc = pytest.mark.skipif(not (shutil.which("g++") and shutil.which("gcc")),
                               reason="g++/gcc not installed")
ACT = {"none": 0, "relu": 1, "relu_n1_to_1": 2, "relu6": 3}


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The harness binary (kernel + td_kernels_conv*.c + stand-in TFLM)."""
    out = tmp_path_factory.mktemp("fc_harness")
    (out / "td_tflm_overrides.h").write_text("/* no board library on the host */\n")
    objs = []
    for c in ("td_kernels_conv.c", "td_kernels_conv_ref.c"):
        obj = out / (c + ".o")
        subprocess.run(["gcc", "-std=c99", "-O2", *WARN, "-c", str(FW / c), "-o", str(obj)],
                       check=True)
        objs.append(str(obj))
    exe = out / "fc_harness"
    subprocess.run(["g++", "-std=c++17", "-O1", *WARN, f"-I{out}", f"-I{FW}", f"-I{STUBS}",
                    str(ROOT / "tests" / "tflm_host" / "fc_harness.cpp"),
                    str(FW / "td_tflm_fc.cpp"), *objs, "-o", str(exe)], check=True)
    return exe


def reference(model: bytes, x: np.ndarray) -> np.ndarray:
    """The TFLM Python runtime's outputs, one row per sample (the whole input tensor each)."""
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(model)
    rows = []
    for sample in x:
        interp.set_input(sample, 0)
        interp.invoke()
        rows.append(np.array(interp.get_output(0)).reshape(-1))
    return np.stack(rows)


def _bits(x: float) -> int:
    return int(np.float32(x).view(np.uint32))


def fc_model(rng: np.random.Generator, *, rows: int, accum: int, in_shape: list[int],
             keep: bool, per_channel: bool, bias: bool, act: str, w_zp: int = 0,
             big_channel: bool = False, dead_channel: bool = False) -> tuple[bytes, dict]:
    """A one-operator int8 FULLY_CONNECTED model and its raw parameters."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s

    lead = int(np.prod(in_shape[:-1]))
    out_shape = [*in_shape[:-1], rows] if keep else [lead, rows]
    in_scale = float(np.float32(rng.uniform(0.005, 0.05)))
    out_scale = float(np.float32(rng.uniform(0.01, 0.3)))
    n_scales = rows if per_channel else 1
    w_scales = np.exp(rng.uniform(np.log(1e-3), np.log(2e-2), n_scales)).astype(np.float32)
    if big_channel:  # multiplier >= 0.5: QuantizeMultiplier shift >= 0
        w_scales[0] = np.float32(0.9 * out_scale / in_scale)
    if dead_channel:  # multiplier below 2^-32: flushed to 0
        w_scales[-1] = np.float32(1e-12)
    weights = rng.integers(-127, 128, size=(rows, accum), dtype=np.int8)
    b_scales = [float(np.float32(in_scale) * np.float32(w)) for w in w_scales]
    bias_q = rng.integers(-4000, 4000, size=rows, dtype=np.int32)
    in_zp, out_zp = int(rng.integers(-128, 128)), int(rng.integers(-100, 100))

    def quant(scale: list[float], zp: list[int], dim: int = 0) -> s.QuantizationParametersT:
        q = s.QuantizationParametersT()
        q.scale, q.zeroPoint, q.quantizedDimension = scale, zp, dim
        return q

    def tensor(name: str, shape: list[int], typ: int, buf: int,
               q: s.QuantizationParametersT) -> s.TensorT:
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer, t.quantization = name.encode(), shape, typ, buf, q
        return t

    bufs = [s.BufferT() for _ in range(3)]
    bufs[1].data = weights.tobytes()
    tensors = [tensor("x", in_shape, s.TensorType.INT8, 0, quant([in_scale], [in_zp])),
               tensor("w", [rows, accum], s.TensorType.INT8, 1,
                      quant([float(w) for w in w_scales], [w_zp] * n_scales)),
               tensor("y", out_shape, s.TensorType.INT8, 0, quant([out_scale], [out_zp]))]
    inputs = [0, 1, -1]
    if bias:
        bufs.append(s.BufferT())
        bufs[3].data = bias_q.tobytes()
        tensors.append(tensor("b", [rows], s.TensorType.INT32, 3,
                              quant(b_scales, [0] * n_scales)))
        inputs[2] = 3
    opts = s.FullyConnectedOptionsT()
    opts.fusedActivationFunction, opts.keepNumDims = ACT[act], keep
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, inputs, [2]
    op.builtinOptionsType, op.builtinOptions = s.BuiltinOptions.FullyConnectedOptions, opts
    sg = s.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators = tensors, [0], [2], [op]
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.FULLY_CONNECTED
    code.version = 1
    m = s.ModelT()
    m.version, m.operatorCodes, m.subgraphs, m.buffers = 3, [code], [sg], bufs
    m.description = b"fc"
    raw = {"in_shape": in_shape, "out_shape": out_shape, "rows": rows, "accum": accum,
           "in_scale": in_scale, "in_zp": in_zp, "out_scale": out_scale, "out_zp": out_zp,
           "w_scales": w_scales, "w_zp": w_zp, "bias": bias_q if bias else None,
           "act": ACT[act], "weights": weights}
    return pack(m), raw


def run_kernel(exe: Path, raw: dict, x: np.ndarray, pool_words: int) -> tuple[int, np.ndarray]:
    """(arena bytes the kernel took, outputs) of the harness on samples ``x``."""
    nums: list[int] = [len(raw["in_shape"]), *raw["in_shape"], len(raw["out_shape"]),
                       *raw["out_shape"], raw["rows"], raw["accum"], _bits(raw["in_scale"]),
                       raw["in_zp"], _bits(raw["out_scale"]), raw["out_zp"],
                       len(raw["w_scales"]), *(_bits(w) for w in raw["w_scales"]), raw["w_zp"],
                       0, int(raw["bias"] is not None), raw["act"],
                       *raw["weights"].reshape(-1).tolist()]
    if raw["bias"] is not None:
        nums += raw["bias"].tolist()
    nums += [pool_words, len(x), *x.reshape(-1).tolist()]
    out = subprocess.run([str(exe)], input=" ".join(map(str, nums)), capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out[0].startswith("arena "), (out[:1], raw["w_scales"][:4])
    rows = [np.array(line.split(), dtype=np.int64) for line in out[1:]]
    return int(out[0].split()[1]), np.stack(rows).astype(np.int8)


CASES = [  # (rows, accum, input shape, keep_num_dims, per_channel, bias, activation, extra)
    (10, 32, [1, 32], False, True, True, "none", {}),
    (32, 128, [1, 128], False, True, True, "relu", {}),
    (7, 13, [1, 13], False, True, True, "relu6", {}),
    (5, 3, [3, 3], False, True, False, "none", {}),
    (16, 24, [1, 4, 24], True, True, True, "relu_n1_to_1", {}),
    (9, 20, [2, 3, 20], False, True, True, "none", {}),
    (64, 80, [1, 80], False, True, True, "relu", {"big_channel": True}),
    (12, 16, [1, 16], False, True, True, "none", {"dead_channel": True, "big_channel": True}),
    (20, 40, [1, 40], False, False, True, "relu", {}),
    (3, 5, [2, 5], False, False, False, "none", {}),
    (8, 9, [1, 9], False, False, True, "relu6", {"big_channel": True}),
    (6, 10, [1, 10], False, False, True, "none", {"w_zp": 3}),
]


@needs_gcc
@pytest.mark.parametrize("case", range(len(CASES)))
def test_kernel_is_bit_exact_with_tflm(harness: Path, case: int) -> None:
    rows, accum, shape, keep, pc, bias, act, extra = CASES[case]
    rng = np.random.default_rng(100 + case)
    model, raw = fc_model(rng, rows=rows, accum=accum, in_shape=shape, keep=keep,
                          per_channel=pc, bias=bias, act=act, **extra)
    facts = load(model)
    x = rng.integers(-128, 128, size=(12, *shape), dtype=np.int8)
    x[0], x[1] = -128, 127
    ref = reference(model, x)
    arena, got = run_kernel(harness, raw, x, _fc_pool_words(facts))
    np.testing.assert_array_equal(got, ref)
    assert arena <= 64  # OpData only: the tables fit the generator's pool
    arena, got = run_kernel(harness, raw, x, -1)  # no pool: the tables come from the arena
    np.testing.assert_array_equal(got, ref)
    assert arena > 64 or (not pc and (extra.get("w_zp") or False))


@needs_gcc
def test_random_layers_bit_exact(harness: Path) -> None:
    """120 random per-channel and per-tensor layers, 6 samples each."""
    rng = np.random.default_rng(7)
    for _ in range(120):
        rows, accum = int(rng.integers(1, 65)), int(rng.integers(1, 90))
        lead = [int(rng.integers(1, 4))] if rng.random() < 0.7 else [1, int(rng.integers(1, 4))]
        keep = len(lead) == 2 and rng.random() < 0.5
        model, raw = fc_model(rng, rows=rows, accum=accum, in_shape=[*lead, accum], keep=keep,
                              per_channel=rng.random() < 0.75, bias=rng.random() < 0.8,
                              act=str(rng.choice(list(ACT))),
                              big_channel=rng.random() < 0.2, dead_channel=rng.random() < 0.1)
        facts = load(model)
        x = rng.integers(-128, 128, size=(6, *lead, accum), dtype=np.int8)
        ref = reference(model, x)
        _, got = run_kernel(harness, raw, x, _fc_pool_words(facts))
        np.testing.assert_array_equal(got, ref, err_msg=f"rows {rows} accum {accum} {lead}")


@needs_gcc
def test_non_int8_and_bad_scales_refused_in_prepare(harness: Path) -> None:
    rng = np.random.default_rng(3)
    _, raw = fc_model(rng, rows=4, accum=8, in_shape=[1, 8], keep=False, per_channel=True,
                      bias=True, act="none")
    raw["w_scales"] = raw["w_scales"][:3]  # 3 scales for 4 rows
    nums_out = subprocess.run(
        [str(harness)], capture_output=True, text=True, check=True,
        input=" ".join(map(str, [2, 1, 8, 2, 1, 4, 4, 8, _bits(0.01), 0, _bits(0.1), 0, 3,
                                 *(_bits(w) for w in raw["w_scales"]), 0, 0, 0, 0,
                                 *raw["weights"].reshape(-1).tolist(), 16, 0])))
    assert nums_out.stdout.strip() == "prepare failed"
    assert "per-channel scales do not match" in nums_out.stderr
