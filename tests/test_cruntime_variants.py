"""Conv / depthwise / FC kernel variants: each reads the layout the generator emits for it.

Regressions (tests/data/regressions/, found on public and fresh models): a 1x1 CONV_2D with
a dead channel (multiplier 0) and a FULLY_CONNECTED with a shift >= 0 used to read their
interleaved filters as plain rows (4 of 4 samples wrong). Both now stay on the fast
variants (the dead channel in the one-multiply form, the shift >= 0 in the general form) and
are bit-exact with the TFLM Python runtime on the host build and on qemu-cm4. A
MobileNet-style model (person_detect) edited to have dead channels and a layer whose
shifts are >= 0 is checked the same way.
"""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import needs_tflm
import numpy as np
import pytest

from tinydeploy.cruntime import generate_c
from tinydeploy.cruntime.harness import build_harness, run_harness
from tinydeploy.cruntime.variants import (
    DW16,
    INTERLEAVED4,
    PLAIN,
    RQ4,
    VARIANTS,
    check_call,
    fast_variant,
    rq4_quads,
    rq_pairs,
)
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load
from tinydeploy.hostref import HostModel

DATA = Path(__file__).parent / "data"
REG = DATA / "regressions"
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
HAS_QEMU = all(shutil.which(t) for t in ("arm-none-eabi-gcc", "qemu-system-arm"))


def _calls(out_dir: Path) -> list[tuple[str, str]]:
    """(kernel entry point, struct name) of every conv/FC call in the generated model."""
    text = (out_dir / "td_model.c").read_text()
    return re.findall(r"(td_(?:conv2d|depthwise_conv2d|fully_connected)_(?:fast\w*|ref))"
                      r"\(&(\w+),", text)


def _check_device(model: bytes | Path, x: np.ndarray, ref: np.ndarray, work: Path) -> None:
    """The DSP build on qemu-cm4 gives ``ref`` for every sample."""
    if not HAS_QEMU:
        return
    from tinydeploy.device.link import Link
    from tinydeploy.device.qemu import start_qemu

    path = work / "model.tflite"
    path.write_bytes(model if isinstance(model, bytes) else Path(model).read_bytes())
    with start_qemu(path, work / "fw") as proc, Link(proc.port, timeout=60.0) as link:
        link.hello()
        for i in range(len(x)):
            got = np.frombuffer(bytes(link.infer(x[i].tobytes()).output), dtype=np.int8)
            np.testing.assert_array_equal(got, ref[i].reshape(-1), err_msg=f"sample {i}")


def _bit_exact(model: bytes | Path, x: np.ndarray, work: Path) -> Path:
    """Host build and qemu-cm4 equal the TFLM Python runtime; returns the generated dir."""
    needs_tflm.require_tflm()
    facts = load(model)
    res = generate_c(facts, work / "c", tflm_arena=False)
    ref = HostModel(facts).predict(x)
    y = run_harness(build_harness(res.out_dir), x, facts.outputs[0].shape[1:])
    np.testing.assert_array_equal(y, ref.reshape(y.shape))
    _check_device(model, x, ref, work)
    return res.out_dir


@needs_gcc
@pytest.mark.parametrize("name,kernel", [
    ("r1_conv1x1_zero_multiplier", "td_conv2d_fast"),
    ("r2_fc_shift_nonneg", "td_fully_connected_fastg"),
])
def test_regression_models_bit_exact_on_fast_variants(name: str, kernel: str,
                                                      tmp_path: Path) -> None:
    x = np.load(REG / f"{name}.npz")["x_test"]
    out = _bit_exact(REG / f"{name}.tflite", x, tmp_path)
    (call,) = _calls(out)
    assert call[0] == kernel


def _dead_and_wide_person_detect() -> bytes:
    """person_detect with three dead output channels (zero weights, weight scale 1e-10: a
    zero multiplier) in one pointwise CONV_2D and, in another, an output scale so small
    that most channels' effective scale is >= 0.5 (shift >= 0)."""
    import flatbuffers

    base = load(DATA / "person_detect.tflite")
    model = copy.deepcopy(base.model)
    sub = model.subgraphs[0]
    pointwise = [op for op, n in zip(sub.operators, base.op_sequence, strict=True)
                 if n == "CONV_2D" and list(sub.tensors[int(op.inputs[1])].shape)[1:3] == [1, 1]]
    dead, wide = pointwise[2], pointwise[5]
    w = sub.tensors[int(dead.inputs[1])]
    buf = model.buffers[w.buffer]
    data = np.frombuffer(bytes(bytearray(buf.data)), np.int8).reshape(w.shape).copy()
    for c in (0, 5, 11):
        data[c] = 0
        w.quantization.scale[c] = 1e-10
    buf.data = data.reshape(-1).view(np.uint8)
    x_q = sub.tensors[int(wide.inputs[0])].quantization
    w_q = sub.tensors[int(wide.inputs[1])].quantization
    y = sub.tensors[int(wide.outputs[0])]
    eff = np.float32(x_q.scale[0]) * np.asarray(w_q.scale, np.float32)
    y.quantization.scale = [float(np.float32(np.median(eff) * 1.2))]
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


@needs_gcc
def test_dead_channels_and_nonneg_shift_mobilenet_bit_exact(tmp_path: Path) -> None:
    model = _dead_and_wide_person_detect()
    facts = load(model)
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, size=(3, *facts.inputs[0].shape[1:]), dtype=np.int8)
    out = _bit_exact(model, x, tmp_path)
    calls = _calls(out)
    assert all("_fast" in fn for fn, _ in calls)  # nothing falls back
    assert [fn for fn, _ in calls].count("td_conv2d_fastg") == 1
    rq = (out / "td_model.c").read_text()
    assert re.search(r"_rq\[\d+\] = \{[^}]*\b0, 0,", rq)  # a dead channel's {0, 0}


def test_rq_pairs_forms() -> None:
    flat = rq_pairs([(1 << 30, -3), (0, 0), (0, -40)])
    assert flat == [1 << 30, 2, 0, 0, 0, 0] and fast_variant("td_x_fast", flat) == "td_x_fast"
    flat = rq_pairs([(1 << 30, -1), (3 << 29, 2)])
    assert flat == [1 << 30, 0, 3 << 29, -3] and fast_variant("td_x_fast", flat) == "td_x_fastg"


def test_layout_contract_refuses_a_mismatch() -> None:
    layouts = {"f_plain": PLAIN, "f_il": INTERLEAVED4}
    arrays = {"r": [1 << 30, 3], "rg": [1 << 30, -2], "q": rq4_quads([1 << 30, 3]),
              "qg": rq4_quads([1 << 30, -2])}
    ok = {"filter": "f_il", "rq": "q", "bias_eff": "b"}
    assert check_call("td_conv2d_fast", ok, layouts, arrays).filter_layout == INTERLEAVED4
    assert check_call("td_conv2d_fastg", {**ok, "rq": "qg"}, layouts, arrays)
    assert check_call("td_conv2d_1x1c1", ok, layouts, arrays).requant == RQ4
    assert check_call("td_fully_connected_fast", {**ok, "rq": "r"}, layouts, arrays)
    for fn, fields in (
        ("td_conv2d_ref", {"filter": "f_il", "mult": "m", "shift": "s"}),  # the old bug
        ("td_conv2d_fast", {"filter": "f_plain", "rq": "q", "bias_eff": "b"}),
        ("td_fully_connected_fast", {"filter": "f_il", "mult": "m", "shift": "s",
                                     "bias_eff": "b"}),
        ("td_fully_connected_fast", {"filter": "f_il", "rq": "r"}),
        ("td_conv2d_fast", {"filter": "f_il", "rq": "qg", "bias_eff": "b"}),  # shift >= 0
        ("td_conv2d_fast", {"filter": "f_il", "rq": "r", "bias_eff": "b"}),  # pairs
        ("td_conv2d_1x1c1", {"filter": "f_il", "rq": "qg", "bias_eff": "b"}),  # shift >= 0
        ("td_conv2d_1x1c1", {"filter": "f_plain", "rq": "q", "bias_eff": "b"}),
    ):
        with pytest.raises(TinyDeployError, match="layout contract"):
            check_call(fn, fields, layouts, arrays)
    assert set(VARIANTS) == {f"td_{k}_{v}" for k in ("conv2d", "depthwise_conv2d",
                                                      "fully_connected")
                             for v in ("fast", "fastg", "ref")} - {
        "td_depthwise_conv2d_ref", "td_depthwise_conv2d_fast", "td_depthwise_conv2d_fastg"} | {
                                      "td_depthwise_conv2d_fastw", "td_depthwise_conv2d_fastwg",
                                      # weights in place: tinydeploy's TFLM kernel
                                      "td_fully_connected_plain", "td_fully_connected_plaing",
                                      # FULLY_CONNECTED streaming (fc_stream.py)
                                      "td_fc_stream_end", "td_fc_stream_endg",
                                      # an unpadded 1x1 of one input channel
                                      "td_conv2d_1x1c1"}


def test_header_declares_the_same_variants() -> None:
    """td_kernels.h's table names every variant with the layout variants.py gives it."""
    header = (Path(__file__).resolve().parent.parent / "firmware" / "td_kernels.h").read_text()
    for fn, v in VARIANTS.items():
        row = re.search(rf"\*\s+{fn}\s+(\w+)", header)
        assert row is not None and row.group(1) == v.filter_layout, fn


FUZZ_FOUND = ["int32_bias_conv16", "int32_bias_fc16", "layout_conv_zero_weights",
              "layout_fc_shift_nonneg", "pad16_zero_point", "strided_slice_shrink_begin_mask",
              "tconv16_input_zero_point"]


@needs_gcc
@pytest.mark.parametrize("name", FUZZ_FOUND)
@needs_tflm.mark
def test_fuzzer_found_models_bit_exact(name: str, tmp_path: Path) -> None:
    """The minimal models the differential fuzzer shrank (tests/data/regressions/README.md):
    the host build equals the TFLM Python runtime on their saved samples."""
    from tinydeploy.cruntime.harness import run_harness_bytes

    facts = load(REG / f"{name}.tflite")
    (t_in,), outs = facts.inputs, facts.outputs
    x = np.load(REG / f"{name}.npz")["x_test"]
    host = HostModel(facts)
    res = generate_c(facts, tmp_path / "c", tflm_arena=False)
    got = run_harness_bytes(build_harness(res.out_dir), [[s] for s in x],
                            [(tuple(t.shape), t.numpy_dtype) for t in outs])
    for i, sample in enumerate(x):
        host.interpreter.set_input(sample.reshape(t_in.shape), 0)
        host.interpreter.invoke()
        for k in range(len(outs)):
            want = np.array(host.interpreter.get_output(k)).reshape(-1)
            np.testing.assert_array_equal(np.asarray(got[i][k]).reshape(-1), want,
                                          err_msg=f"{name} sample {i} output {k}")


def test_rq4_quads_carry_the_rounding_constant() -> None:
    """td_depthwise_conv2d_fastw reads {mult, code, lo, hi}: lo/hi = 2^30 + 2^(31 + code)."""
    q = rq4_quads([1 << 30, 0, 1 << 30, 3, 5, -2])
    assert q == [1 << 30, 0, -(1 << 30), 0,  # 0xC0000000 as int32, high word 0
                 1 << 30, 3, 1 << 30, 4,  # 2^30 + 2^34
                 5, -2, 0, 0]  # a left shift reads no constant
    layouts = {"fw": DW16}
    arrays = {"q": q[:8], "qg": q, "pairs": [1 << 30, 0, 1 << 30, 3]}
    ok = {"filter_w": "fw", "rq": "q"}
    assert check_call("td_depthwise_conv2d_fastw", ok, layouts, arrays).requant == RQ4
    with pytest.raises(TinyDeployError, match="shift >= 0"):
        check_call("td_depthwise_conv2d_fastw", {**ok, "rq": "qg"}, layouts, arrays)
    with pytest.raises(TinyDeployError, match="quads"):
        check_call("td_depthwise_conv2d_fastw", {**ok, "rq": "pairs"}, layouts,
                   {**arrays, "pairs": [1 << 30, 0, 1 << 30, 3, 7, 0]})
