"""The 16x8 CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED fast paths (emit_int16.py,
td_kernels_int16_fast.c): int32 sums where the weights prove them exact (``wide`` 0), int32
per filter row (FC: row segment) added in int64 (``wide`` 1), the int64 reference kernels
otherwise; windows read in place or gathered (padding, dilation); requantization folded or
not. Each model is seanet_conv0 rewritten (shapes, weights, padding, strides, operator),
generated as C, built natively (and for qemu-cm4: the DSP code) and compared bit for bit
with the TFLM Python runtime on random and worst-case (saturating) int16 inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import needs_tflm
import numpy as np
import pytest

from tinydeploy.cruntime import generate_c
from tinydeploy.cruntime.emit_int16 import accum_mode, fold_requant, pair_layout
from tinydeploy.cruntime.harness import build_harness, run_harness_bytes
from tinydeploy.facts import ModelFacts, load

DATA = Path(__file__).parent / "data"


def _rewrite(in_shape: list[int], w: np.ndarray, out_shape: list[int], kind: str,
             opts: dict[str, int], seed: int, bias32: int = 0) -> bytes:
    """seanet_conv0 (one 16x8 CONV_2D) with other shapes, weights, int64 bias and options;
    ``kind`` "fc": a FULLY_CONNECTED instead (per-tensor weight scale), "dw": a
    DEPTHWISE_CONV_2D (weights [1, h, w, out_c]); ``bias32``: an int32 bias of that
    magnitude instead."""
    import flatbuffers

    from tinydeploy.tflm_py import schema

    rng = np.random.default_rng(seed)
    data = (DATA / "seanet_conv0.tflite").read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytearray(data), 0))
    sub = model.subgraphs[0]
    op = sub.operators[0]
    fc, dw = kind == "fc", kind == "dw"
    oc = w.shape[3] if dw else w.shape[0]
    k = int(np.prod(w.shape[1:3] if dw else w.shape[1:]))
    x_scale = 1e-3
    w_scales = rng.uniform(0.005, 0.02, size=1 if fc else oc)
    bias = rng.integers(-(1 << 22), 1 << 22, size=oc).astype(np.int64)
    if bias32:
        bias = np.full(oc, bias32, np.int32)
        sub.tensors[op.inputs[2]].type = schema.TensorType.INT32
    # outputs spread over the int16 range for typical inputs, saturating at the extremes
    # (|w| in int64: np.abs of an int8 -128 is -128, which made some output scales negative)
    typical = (16000.0 * np.sqrt(k) * float(np.abs(w.astype(np.int64)).mean() + 1) * x_scale
               * w_scales.mean())
    y_scale = typical / 8000.0

    def tensor(i: int, shape: list[int], values: np.ndarray | None, scales: np.ndarray,
               qdim: int = 0) -> None:
        t = sub.tensors[i]
        t.shape = np.array(shape, dtype=np.int32)
        t.quantization.scale = [float(s) for s in scales]
        t.quantization.zeroPoint = [0] * len(scales)
        t.quantization.quantizedDimension = qdim
        if values is not None:
            model.buffers[t.buffer].data = list(np.ascontiguousarray(values).tobytes())

    tensor(op.inputs[0], in_shape, None, np.array([x_scale]))
    tensor(op.inputs[1], list(w.shape), w.astype(np.int8), w_scales, 3 if dw else 0)
    tensor(op.inputs[2], [oc], bias, x_scale * w_scales)
    tensor(op.outputs[0], out_shape, None, np.array([y_scale]))
    if fc:
        model.operatorCodes[0].builtinCode = schema.BuiltinOperator.FULLY_CONNECTED
        model.operatorCodes[0].deprecatedBuiltinCode = schema.BuiltinOperator.FULLY_CONNECTED
        op.builtinOptionsType = schema.BuiltinOptions.FullyConnectedOptions
        op.builtinOptions = schema.FullyConnectedOptionsT()
    elif dw:
        code = schema.BuiltinOperator.DEPTHWISE_CONV_2D
        model.operatorCodes[0].builtinCode = model.operatorCodes[0].deprecatedBuiltinCode = code
        op.builtinOptionsType = schema.BuiltinOptions.DepthwiseConv2DOptions
        op.builtinOptions = schema.DepthwiseConv2DOptionsT()
        for key, v in opts.items():
            setattr(op.builtinOptions, key, v)
    else:
        for key, v in opts.items():
            setattr(op.builtinOptions, key, v)
    builder = flatbuffers.Builder(len(data) + 4 * w.size + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _out(n: int, f: int, s: int, d: int, same: bool) -> int:
    return (n + s - 1) // s if same else (n - (f - 1) * d - 1 + s) // s


# name -> in [h, w, c], out_c, filter [h, w], stride, dilation, SAME, |w| scale, expected
# call in the generated C (the path the generator must choose)
CONV = {
    "int32_same_stride": ([5, 9, 3], 5, [3, 3], 2, 1, True, 40, ".wide = 0"),
    "int32_valid_1x1": ([3, 7, 5], 4, [1, 1], 1, 1, False, 127, ".wide = 0"),
    "int32_dilated": ([6, 10, 2], 3, [2, 3], 1, 2, True, 127, ".wide = 0"),
    "wide_rows": ([5, 6, 64], 3, [3, 3], 1, 1, True, 127, ".wide = 1"),
    "int64_reference": ([2, 4, 200], 3, [1, 3], 1, 1, False, 127, "td_conv2d_16(&"),
    # int32 bias that TFLM's int32 sum wraps with (acc + bias > 2^31 - 1): not folded
    "int32_bias_wraps": ([3, 3, 56], 2, [3, 3], 1, 1, False, 127, ".fold_bias = 0"),
}
BIAS32 = {"int32_bias_wraps": 1 << 26}
BATCH = {"int32_same_stride": 2}  # 15 output pixels per image: a lone last pixel each
DW = {  # as CONV (out_c = in_c * depth multiplier)
    "dw_same_stride": ([6, 7, 5], 5, [3, 3], 2, 1, True, 127, "td_depthwise_conv2d_16_fast("),
    "dw_dilated": ([7, 8, 4], 4, [2, 3], 1, 2, True, 127, "td_depthwise_conv2d_16_fast("),
    "dw_multiplier2": ([4, 5, 3], 6, [3, 3], 1, 1, True, 127, "td_depthwise_conv2d_16(&"),
}
FC = {  # name -> batches, accum, out_c, |w| scale, expected call
    "fc_int32": (3, 37, 7, 127, "td_fully_connected_16_fast("),
    "fc_wide_segments": (3, 600, 5, 127, ".seg = 300"),
    "fc_int64_reference": (2, 601, 3, 127, "td_fully_connected_16(&"),  # 601: a prime
}


def _weights(rng: np.random.Generator, shape: tuple[int, ...], mag: int) -> np.ndarray:
    w = rng.integers(-mag, mag + 1, size=shape)
    w.reshape(shape[0], -1)[0] = -128 if mag == 127 else -mag  # a worst-case channel
    return w.astype(np.int8)


def _inputs(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Random int16 samples; the first three all -32768, all 32767, all 0."""
    x = rng.integers(-32768, 32768, size=(6, *shape)).astype(np.int16)
    x[0], x[1], x[2] = -32768, 32767, 0
    return x


def _tflm(facts: ModelFacts, x: np.ndarray) -> list[np.ndarray]:
    needs_tflm.require_tflm()
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(facts.data, arena_size=1 << 20)
    out = []
    for s in x:
        interp.reset()
        interp.set_input(s.reshape(facts.inputs[0].shape), 0)
        interp.invoke()
        out.append(np.array(interp.get_output(0)).reshape(facts.outputs[0].shape))
    return out


def _run(path: Path, x: np.ndarray, tmp: Path, expect: str) -> None:
    facts = load(path)
    res = generate_c(facts, tmp / "c", tflm_arena=False)
    assert expect in (res.out_dir / "td_model.c").read_text()
    binary = build_harness(res.out_dir)
    t_out = facts.outputs[0]
    got = run_harness_bytes(binary, [[s] for s in x], [(tuple(t_out.shape), np.int16)])
    for k, ref in enumerate(_tflm(facts, x)):
        bad = np.argwhere(got[k][0] != ref)
        assert bad.size == 0, f"sample {k}: {len(bad)} values differ, first {bad[0]}"
        if k < 2:  # the extremes saturate somewhere: a test that could see an overflow
            assert np.abs(ref.astype(np.int32)).max() > 1000


def _case(name: str, tmp: Path) -> tuple[Path, np.ndarray, str]:
    """The model of case ``name`` (CONV or FC), its inputs, the expected generated call."""
    rng = np.random.default_rng(sum(map(ord, name)))
    path = tmp / f"{name}.tflite"
    if name in FC:
        batches, accum, oc, mag, expect = FC[name]
        w = _weights(rng, (oc, accum), mag)
        path.write_bytes(_rewrite([batches, accum], w, [batches, oc], "fc", {}, 2))
        x = _inputs((batches, accum), rng)
        x[3] = np.where(w[0] < 0, -32768, 32767).astype(np.int16)  # channel 0 at its bound
        return path, x, expect
    (h, w_, c), oc, (fh, fw), s, d, same, mag, expect = (CONV | DW)[name]
    oh, ow = _out(h, fh, s, d, same), _out(w_, fw, s, d, same)
    opts = {"padding": 0 if same else 1, "strideH": s, "strideW": s,
            "dilationHFactor": d, "dilationWFactor": d}
    if name in DW:
        w = _weights(rng, (fh, fw, oc), mag).reshape(1, fh, fw, oc)
        w[..., 0] = -128  # channel 0: the worst case
        opts["depthMultiplier"] = oc // c
        path.write_bytes(_rewrite([1, h, w_, c], w, [1, oh, ow, oc], "dw", opts, 3))
    else:
        w = _weights(rng, (oc, fh, fw, c), mag)
        n = BATCH.get(name, 1)
        path.write_bytes(_rewrite([n, h, w_, c], w, [n, oh, ow, oc], "conv", opts, 1,
                                  BIAS32.get(name, 0)))
        if n > 1:
            x = _inputs((n, h, w_, c), rng)
            x[3] = np.where(rng.random((n, h, w_, c)) < 0.5, -32768, 32767)
            return path, x, expect
    x = _inputs((h, w_, c), rng)
    x[3] = np.where(rng.random((h, w_, c)) < 0.5, -32768, 32767).astype(np.int16)
    return path, x, expect


@pytest.mark.parametrize("name", [*CONV, *DW, *FC])
def test_fast_paths_bit_exact(name: str, tmp_path: Path) -> None:
    path, x, expect = _case(name, tmp_path)
    _run(path, x, tmp_path, expect)


CM4 = ["int32_same_stride", "int32_dilated", "wide_rows", "int32_bias_wraps", "dw_same_stride",
       "fc_int32"]


@pytest.mark.parametrize("name", CM4)
def test_fast_paths_bit_exact_on_cm4(name: str, tmp_path: Path) -> None:
    """The DSP-extension code (SMLAD) on qemu-cm4: odd and even row segments, gathered
    windows, per-row int64 sums, FC batch pairs."""
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (apt-get install gcc-arm-none-eabi "
                        "libnewlib-arm-none-eabi qemu-system-arm)")
    from tinydeploy.device.link import Link
    from tinydeploy.device.qemu import start_qemu

    path, x, _ = _case(name, tmp_path)
    facts = load(path)
    got = []
    with start_qemu(path, tmp_path / "fw") as proc, Link(proc.port, timeout=30.0) as link:
        link.hello()
        for s in x:
            reply = link.infer(np.ascontiguousarray(s).tobytes())
            got.append(np.frombuffer(bytes(reply.output), dtype=np.int16))
    ref = _tflm(facts, x)
    for k, (a, b) in enumerate(zip(got, ref, strict=True)):
        assert np.array_equal(a, b.reshape(-1)), f"{name} sample {k} differs on qemu-cm4"


def test_accum_mode_bounds() -> None:
    ok = np.full((2, 65535 // 127), 127, np.int8)  # 32768 * 65405 < 2^31
    assert accum_mode(ok, ok.shape[1]) == 0
    big = np.full((2, 520), -128, np.int8)  # 32768 * 66560 > 2^31 - 1
    assert accum_mode(big, 260) == 1
    assert accum_mode(big, 520) is None
    assert accum_mode(np.full((1, 512), -128, np.int8), 8) == 1  # exactly 2^31: too big


def test_pair_layout_order() -> None:
    rows = np.arange(2 * 7, dtype=np.int8).reshape(2, 7)  # a = 0..6, b = 7..13
    lay = pair_layout(rows, 7).tolist()
    assert lay == [0, 2, 1, 3, 7, 9, 8, 10, 4, 11, 5, 12, 6, 13]
    odd = pair_layout(np.arange(3 * 2, dtype=np.int8).reshape(3, 2), 2).tolist()
    assert odd == [0, 2, 1, 3, 4, 0, 5, 0]


def _tflm_requant(acc: int, bias: int, bias64: int, mult: int, shift: int) -> int:
    """TFLM: (int32-wrapped) acc + bias, then the 64-bit MultiplyByQuantizedMultiplier."""
    x = acc + bias
    if not bias64:
        x = (x + (1 << 31)) % (1 << 32) - (1 << 31)
    r = (mult + (1 << 15)) >> 16 if mult < 0x7FFF0000 else 0x7FFF
    t = 15 - shift
    return (x * r + (1 << (t - 1))) >> t


def _low32(v: int) -> int:
    return (v + (1 << 31)) % (1 << 32) - (1 << 31)


def test_fold_requant_matches_tflm() -> None:
    rng = np.random.default_rng(5)
    rows = rng.integers(-128, 128, size=(6, 40)).astype(np.int8)
    bound = 32768 * np.abs(rows.astype(np.int64)).sum(1)
    mults = [int(v) for v in rng.integers(1 << 30, 1 << 31, size=6)]
    mults[0] = 0x7FFF8000  # the reduced multiplier's saturating case
    shifts = [int(v) for v in rng.integers(-30, 2, size=6)]
    bias64 = 1
    bias = rng.integers(-(1 << 24), 1 << 24, size=6)
    vals = fold_requant(rows, mults, shifts, bias, bias64)
    assert vals is not None
    for c, (b, r, t) in enumerate(vals):
        for acc in [-int(bound[c]), int(bound[c]), 0, *rng.integers(-bound[c], bound[c], 50)]:
            want = _tflm_requant(int(acc), int(bias[c]), bias64, mults[c], shifts[c])
            assert _low32((int(acc) * r + b) >> t) == _low32(want)
    # an int32 bias: TFLM sums in int32 and requantizes with the 32-bit form, not folded
    assert fold_requant(rows, mults, shifts, bias, 0) is None


def test_seanet_conv0_dsp_and_portable_equal_cm4(tmp_path: Path) -> None:
    """The public 16x8 model on qemu-cm4, DSP and -DTD_PORTABLE builds: both bit-exact with
    its Cortex-M4 ground truth, the DSP one running fewer instructions."""
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (apt-get install gcc-arm-none-eabi "
                        "libnewlib-arm-none-eabi qemu-system-arm)")
    from tinydeploy.device.link import Link
    from tinydeploy.device.qemu import start_qemu

    path = DATA / "seanet_conv0.tflite"
    x = np.load(DATA / "seanet_conv0.inputs.npy")[:4]
    want = np.load(DATA / "seanet_conv0.outputs_cm4.npy")[:4]
    cycles = {}
    for build, defines in (("dsp", ()), ("portable", ("-DTD_PORTABLE",))):
        with start_qemu(path, tmp_path / build, defines=defines) as proc, \
                Link(proc.port, timeout=60.0) as link:
            link.hello()
            total = 0
            for k in range(len(x)):
                reply = link.infer(np.ascontiguousarray(x[k]).tobytes())
                assert bytes(reply.output) == want[k].tobytes(), f"{build} sample {k}"
                total += int(reply.cycles)
        cycles[build] = total
    assert cycles["dsp"] < 0.8 * cycles["portable"]
