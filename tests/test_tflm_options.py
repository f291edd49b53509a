"""The TFLM-tree paths agree: ``--tflm-src`` implies ``--runtime tflm``, ``--arena`` sizes the
TFLM firmware of native / qemu-cm4 too (for the tree's kernels), operators the tree cannot
run are refused before anything is compiled, and a firmware whose AllocateTensors() failed
says so in its HELLO, reported as "arena too small: N bytes, needs at least M".

Fake trees (tmp_path) and monkeypatched builds run everywhere in seconds; the end-to-end run
with a too-small arena needs a real tree in ``$TINYDEPLOY_TFLM_SRC``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tinydeploy.cli import main
from tinydeploy.device import tflm_build as tb
from tinydeploy.device import tflm_firmware
from tinydeploy.device.connect import resolve_runtime
from tinydeploy.device.hello import check_device
from tinydeploy.device.protocol import (
    PROTOCOL_VERSION,
    DeviceInfo,
    TensorInfo,
    pack_info,
    unpack_info,
)
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load
from tinydeploy.ops import TFLM_OPS

DATA = Path(__file__).parent / "data"
FW = Path(__file__).parent.parent / "firmware"
SINE = DATA / "sine_mlp.tflite"


def _tree(root: Path, methods: list[str], tconv: str = "") -> Path:
    """A fake Chirale-like Arduino library: its resolver header declares ``methods``."""
    src = root / "src"
    micro = src / "tensorflow/lite/micro"
    for rel, text in (("../../../../library.properties", "name=Fake_TFLM\nversion=1.2.3\n"),
                      ("micro_interpreter.h", ""), ("micro_interpreter.cpp", ""),
                      ("kernels/cmsis_nn/conv.cpp", ""), ("kernels/transpose_conv.cpp", tconv)):
        path = (micro / rel).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    body = "\n".join(f"  TfLiteStatus {m}(const TfLiteRegistration& r = Register_X()) "
                     "{ return kTfLiteOk; }" for m in methods)
    (micro / "micro_mutable_op_resolver.h").write_text(
        "template <unsigned int tOpCount>\nclass MicroMutableOpResolver {\n public:\n"
        f"{body}\n  TfLiteStatus AddCustom(const char* name, TfLiteRegistration* r) {{}}\n}};\n")
    return root


ALL_METHODS = sorted({o.resolver for o in TFLM_OPS.values()})


@pytest.fixture()
def no_build(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record what would be built instead of compiling: (board, arena_bytes) per firmware,
    and fail the test on any library compile."""
    calls: list[Any] = []

    def firmware(facts: Any, board: str, tree: Any, arena_bytes: Any, out_dir: Path) -> Path:
        from tinydeploy.device.tflm_ops import check_tree_ops

        check_tree_ops(load(facts), tree)
        calls.append((board, arena_bytes))
        raise TinyDeployError("build_failed", what="(test) no build", rc=0, tail="-", fix="-")

    def forbidden(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("a TFLM library was compiled")

    monkeypatch.setattr(tflm_firmware, "build_tflm_firmware", firmware)
    monkeypatch.setattr(tb, "build_tflm_library", forbidden)
    monkeypatch.setattr(tb, "compile_objects", forbidden)
    return calls


@pytest.fixture(scope="module")
def sine_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tinydeploy.data import Dataset
    from tinydeploy.hostref import dequantize

    facts = load(SINE)
    x = dequantize(np.load(DATA / "sine_mlp.inputs.npy"), facts.inputs[0])[:4]
    y = np.zeros(len(x), np.float32)
    return Dataset(x_train=x, y_train=y, x_val=x, y_val=y, x_test=x, y_test=y).save(
        tmp_path_factory.mktemp("npz") / "d.npz")


def _lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The CLI's error lines (progress lines and logging's own noise about streams an
    earlier test's capture closed are not the CLI's output)."""
    err = capsys.readouterr().err.splitlines()
    return [ln for ln in err if ln.startswith("error")]


def test_tflm_src_implies_the_tflm_runtime_and_contradicts_c(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert resolve_runtime(None, "/x", "c") == "tflm"
    assert resolve_runtime(None, None, "c") == "c" and resolve_runtime(None, None, None) is None
    assert resolve_runtime("tflm", "/x", "c") == "tflm"
    with pytest.raises(TinyDeployError) as err:
        resolve_runtime("c", "/x", "c")
    assert err.value.code == "bad_argument" and "--tflm-src" in str(err.value)
    tree = _tree(tmp_path / "lib", ALL_METHODS)
    out = tmp_path / "out"
    for argv in (["validate", str(SINE), "--data", str(tmp_path / "no.npz"), "--board",
                  "native"], ["deploy", str(SINE), "--data", str(tmp_path / "no.npz")],
                 ["generate", str(SINE)]):
        rc = main([*argv, "--out", str(out), "--runtime", "c", "--tflm-src", str(tree)])
        lines = _lines(capsys)
        assert rc == 2 and len(lines) == 1 and "--runtime c" in lines[0], (argv, lines)
        assert not out.exists()


def test_tflm_src_alone_builds_tflm_firmware_with_the_given_arena(
        tmp_path: Path, sine_npz: Path, no_build: list[Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    from tinydeploy.arena.plan import plan_for_tree

    tree = _tree(tmp_path / "lib", ALL_METHODS)
    base = ["--data", str(sine_npz), "--out", str(tmp_path / "o"), "--tflm-src", str(tree)]
    # validate and deploy on both pseudo-boards: no --runtime, an explicit --arena
    for cmd, board in (("validate", "native"), ("validate", "qemu-cm4"), ("deploy", "native")):
        if board == "qemu-cm4" and not shutil.which("qemu-system-arm"):
            continue
        rc = main([cmd, str(SINE), *base, "--board", board, "--arena", "4000"])
        err = capsys.readouterr().err
        assert rc == 8 and no_build[-1] == (board, 4000), (cmd, board, err)
        assert "ignored" not in err
    # auto: the tree's kernels (a library with cmsis_nn/ -> cmsis-nn), 64-bit margin on native
    rc = main(["validate", str(SINE), *base, "--board", "native"])
    assert rc == 8
    found = tb.find_tflm_tree(tree)
    assert found.flavour == "cmsis-nn"
    assert no_build[-1] == ("native", plan_for_tree(load(SINE), "auto", found, True).size)
    # generate for qemu-cm4 with the tree: the same figure in model_settings.h
    gen = tmp_path / "gen"
    assert main(["generate", str(SINE), "--out", str(gen), "--board", "qemu-cm4",
                 "--tflm-src", str(tree), "--format", "platformio"]) == 0
    size = plan_for_tree(load(SINE), "auto", found, False).size
    settings = next(gen.rglob("model_settings.h")).read_text()
    assert f"#define TD_ARENA_SIZE {size}u" in settings
    # the C runtime keeps ignoring --arena, and says so
    rc = main(["validate", str(SINE), "--data", str(sine_npz), "--out", str(tmp_path / "c"),
               "--board", "sim", "--arena", "4000"])
    assert rc == 0 and "ignored" in capsys.readouterr().err


def test_an_operator_the_tree_lacks_is_refused_before_any_build(
        tmp_path: Path, sine_npz: Path, no_build: list[Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    tree = _tree(tmp_path / "lib", [m for m in ALL_METHODS if m != "AddFullyConnected"])
    out = tmp_path / "o"
    for argv in (["validate", "--board", "native"], ["validate", "--board", "qemu-cm4"],
                 ["deploy", "--board", "native"]):
        rc = main([argv[0], str(SINE), "--data", str(sine_npz), "--out", str(out),
                   *argv[1:], "--tflm-src", str(tree)])
        lines = _lines(capsys)
        assert rc == 3 and len(lines) == 1, (argv, lines)
        assert "FULLY_CONNECTED" in lines[0] and "Fake_TFLM 1.2.3" in lines[0]
        assert no_build == []
    # measuring the arena with that tree is refused the same way, before the probe build
    rc = main(["arena", str(SINE), "--target", "qemu-cm4", "--tflm-src", str(tree)])
    assert rc == 3 and "FULLY_CONNECTED" in capsys.readouterr().err


def test_unbiased_16x8_transpose_conv_is_refused_for_a_tree_with_the_defect(
        tmp_path: Path) -> None:
    from tinydeploy.device.tflm_ops import _unbiased_16x8_transpose_conv, check_tree_ops

    defect = "if (input->type == kTfLiteInt16) {\n  if (bias->type == kTfLiteInt16) {}\n}\n"
    fixed = defect.replace("(bias->type", "(bias != nullptr && bias->type")
    bad = tb.find_tflm_tree(_tree(tmp_path / "bad", ALL_METHODS, defect))
    good = tb.find_tflm_tree(_tree(tmp_path / "good", ALL_METHODS, fixed))
    with_bias = load(DATA / "ext_ops" / "transpose_conv16_0.tflite")
    assert not _unbiased_16x8_transpose_conv(with_bias)
    check_tree_ops(with_bias, bad)  # a bias: the defect is not reached
    unbiased = load(_drop_bias(with_bias.data))
    assert _unbiased_16x8_transpose_conv(unbiased)
    check_tree_ops(unbiased, good)
    with pytest.raises(TinyDeployError) as err:
        check_tree_ops(unbiased, bad)
    assert err.value.code == "unsupported_op" and "16x8" in str(err.value)
    # generate for a board whose library is that old: refused by its facts, nothing written
    path = tmp_path / "tconv16_nobias.tflite"
    path.write_bytes(unbiased.data)
    out = tmp_path / "fw"
    assert main(["generate", str(path), "--out", str(out), "--board", "nano33ble"]) == 3
    assert not out.exists()
    assert main(["generate", str(DATA / "ext_ops" / "transpose_conv16_0.tflite"), "--out",
                 str(out), "--board", "nano33ble", "--format", "platformio"]) == 0


def _fuse_relu(data: bytes) -> bytes:
    """The model with a RELU fused into its TRANSPOSE_CONV (TransposeConvOptions)."""
    from tinydeploy.facts import op_name
    from tinydeploy.tflm_overrides import pack

    model = load(data).model
    for op in model.subgraphs[0].operators:
        if op_name(model.operatorCodes[op.opcodeIndex]) == "TRANSPOSE_CONV":
            op.builtinOptions.fusedActivationFunction = 1
    return pack(model)


NO_ACT = ("TF_LITE_ENSURE_STATUS(tflite::PopulateConvolutionQuantizationParams(\n"
          "    context, input, filter, bias, output, kTfLiteActNone,\n    &mult, &shift));\n")


def test_fused_activation_transpose_conv_is_refused_where_the_kernel_drops_it(
        tmp_path: Path) -> None:
    """TFLM's reference TRANSPOSE_CONV before February 2026 (every Arduino library of the
    table) and CMSIS-NN's (90b983c2) requantize integer outputs with kTfLiteActNone: a
    fused RELU would silently vanish on the device. Refused for such a tree or board, in one
    line, before anything is built or written; the same model without it is not."""
    from tinydeploy.device.tflm_ops import check_tree_ops, fused_act_transpose_convs

    plain = load(DATA / "ext_ops" / "transpose_conv_0.tflite")
    fused = load(_fuse_relu(plain.data))
    assert (fused_act_transpose_convs(plain), fused_act_transpose_convs(fused)) == (0, 1)
    bad = tb.find_tflm_tree(_tree(tmp_path / "bad", ALL_METHODS, NO_ACT))
    good = tb.find_tflm_tree(_tree(tmp_path / "good", ALL_METHODS,
                                   NO_ACT.replace("kTfLiteActNone", "params->activation")))
    check_tree_ops(plain, bad)
    check_tree_ops(fused, good)
    with pytest.raises(TinyDeployError) as err:
        check_tree_ops(fused, bad)
    assert err.value.code == "unsupported_op" and "fused activation" in str(err.value)
    path = tmp_path / "tconv_relu.tflite"
    path.write_bytes(fused.data)
    out = tmp_path / "fw"
    assert main(["generate", str(path), "--out", str(out), "--board", "nano33ble"]) == 3
    assert not out.exists()
    assert main(["generate", str(path), "--out", str(out), "--board", "qemu-cm4",
                 "--runtime", "c"]) == 0  # the C runtime applies it (bit-exact, see ext_ops)


@pytest.mark.skipif(not os.environ.get("TINYDEPLOY_TFLM_SRC"),
                    reason="set TINYDEPLOY_TFLM_SRC to a tflite-micro checkout with downloads")
def test_fused_activation_transpose_conv_on_the_real_tree() -> None:
    """Upstream 90b983c2: its reference kernel applies the activation, its CMSIS-NN kernel
    does not."""
    from tinydeploy.device.tflm_ops import check_tree_ops

    fused = load(_fuse_relu((DATA / "ext_ops" / "transpose_conv_0.tflite").read_bytes()))
    tree = tb.find_tflm_tree(os.environ["TINYDEPLOY_TFLM_SRC"], flavour="reference")
    if tree.kind != "tflite-micro":
        pytest.skip("a tflite-micro checkout is needed (an Arduino library has no flavours)")
    check_tree_ops(fused, tree)
    with pytest.raises(TinyDeployError, match="fused activation"):
        check_tree_ops(fused, tb.find_tflm_tree(os.environ["TINYDEPLOY_TFLM_SRC"],
                                                flavour="cmsis-nn"))


def _drop_bias(data: bytes) -> bytes:
    """The model with its TRANSPOSE_CONV's bias input omitted (-1)."""
    from tinydeploy.facts import op_name
    from tinydeploy.tflm_overrides import pack

    model = load(data).model
    for op in model.subgraphs[0].operators:
        if op_name(model.operatorCodes[op.opcodeIndex]) == "TRANSPOSE_CONV":
            op.inputs = np.array([*list(op.inputs[:3]), -1], dtype=np.int32)
    return pack(model)


def _info(status: int, size: int = 600, runtime: str = "tflm") -> DeviceInfo:
    facts = load(SINE)
    t_in, t_out = facts.inputs[0], facts.outputs[0]
    return DeviceInfo(PROTOCOL_VERSION, "tinydeploy test", "native", runtime, facts.sha256,
                      (TensorInfo(t_in.dtype, tuple(t_in.shape), float(t_in.scale),
                                  int(t_in.zero_point)),),
                      (TensorInfo(t_out.dtype, tuple(t_out.shape), float(t_out.scale),
                                  int(t_out.zero_point)),),
                      size, 0, 0, model_status=status)


def test_hello_model_status_round_trips_and_names_the_arena() -> None:
    from tinydeploy.arena.predict import predict_flavour

    facts = load(SINE)
    for status in (0, 3, -1):
        got, _ = unpack_info(pack_info(_info(status)))
        assert got.model_status == status
    check_device(_info(0), facts, "p")
    for flavour in ("reference", "cmsis-nn"):
        with pytest.raises(TinyDeployError) as err:
            check_device(unpack_info(pack_info(_info(3)))[0], facts, "p", flavour)
        need = predict_flavour(facts, flavour)
        assert err.value.code == "arena_too_small" and err.value.exit_code == 4
        text = str(err.value)
        assert text.startswith(f"arena too small: 600 bytes, needs at least {need}"), text
        assert "reflash" not in text and "--arena" in text
    with pytest.raises(TinyDeployError) as err:  # more than the prediction: at least N + 1
        check_device(_info(3, size=50_000), facts, "p")
    assert "50000 bytes, needs at least 50001" in str(err.value)
    with pytest.raises(TinyDeployError) as err:
        check_device(_info(-1, runtime="c"), facts, "p")
    assert err.value.code == "protocol_error" and "did not start" in str(err.value)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
def test_c_protocol_sends_the_model_status_in_info(tmp_path: Path) -> None:
    """The firmware's protocol core puts td_info.model_status into INFO bytes 2-3."""
    from tinydeploy.device.protocol import FrameDecoder, Op, encode_frame

    main_c = tmp_path / "m.c"
    main_c.write_text(r'''
#include <stdio.h>
#include <string.h>
#include "td_protocol.h"
static void wr(void *c, const uint8_t *d, size_t n) { (void)c; fwrite(d, 1, n, stdout); }
static int inf(void *c, uint32_t f, td_timing *t) { (void)c; (void)f; (void)t; return 0; }
int main(void) {
  static uint8_t store[8192], in[4], out[4];
  static td_info info;
  uint8_t buf[64];
  size_t n;
  info.firmware_version = "t"; info.board_id = "native"; info.runtime = "tflm";
  info.input.dtype = 9; info.input.ndims = 1; info.input.dims[0] = 1; info.input.data = in;
  info.output.dtype = 9; info.output.ndims = 1; info.output.dims[0] = 1; info.output.data = out;
  info.model_status = 3; info.arena_size = 1234;
  if (td_device_size() > sizeof store) return 2;
  td_device *dev = td_init(store, &info, inf, 0, wr, 0);
  while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) td_feed_buf(dev, buf, n);
  return 0;
}
''')
    exe = tmp_path / "m"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{FW}", str(main_c),
                    str(FW / "td_protocol.c"), "-o", str(exe)], check=True)
    raw = subprocess.run([str(exe)], input=encode_frame(Op.HELLO, 7, bytes([PROTOCOL_VERSION])),
                         capture_output=True, check=True).stdout
    frames = [f for f in FrameDecoder().feed(raw) if getattr(f, "op", None) == Op.INFO]
    info, _ = unpack_info(frames[-1].payload)
    assert info.model_status == 3 and info.arena_size == 1234


def test_a_device_lost_before_its_hello_with_a_small_arena_is_arena_too_small() -> None:
    """TFLM of January 2023 crashes in AllocateTensors() instead of failing: a TFLM
    firmware built here that vanishes before its HELLO, with an arena below the
    prediction, is reported as too small; otherwise the loss stays what it was."""
    from types import SimpleNamespace

    from tinydeploy.arena.predict import predict_flavour, predict_host64
    from tinydeploy.device.hello import crash_in_allocation

    facts = load(SINE)
    tree = SimpleNamespace(flavour="cmsis-nn", name="Chirale_TensorFLowLite 2.0.0")
    lost = TinyDeployError("port_error", port="/dev/pts/9", problem="no such file")

    def run(arena: int, native: bool = False, up: bool = False) -> TinyDeployError:
        with pytest.raises(TinyDeployError) as err, \
                crash_in_allocation(facts, tree, arena, native) as started:
            started["up"] = up
            raise lost
        return err.value

    err = run(600)
    need = predict_flavour(facts, "cmsis-nn")
    assert err.code == "arena_too_small" and err.exit_code == 4
    assert str(err).startswith(f"arena too small: 600 bytes, needs at least {need}")
    assert "Chirale_TensorFLowLite 2.0.0" in str(err) and "reflash" not in str(err)
    assert str(run(need - 1, native=True)).startswith(  # native: the 64-bit replay's figure
        f"arena too small: {need - 1} bytes, needs at least {predict_host64(facts)}")
    assert run(need).code == "port_error"  # not below the prediction: another cause
    assert run(600, up=True).code == "port_error"  # after the HELLO: not the allocation


TREE = os.environ.get(tb.ENV_SRC)


@pytest.mark.skipif(not TREE, reason=f"no TFLM tree: set {tb.ENV_SRC} to an Arduino TFLM "
                    "library (Chirale_TensorFLowLite) or a tflite-micro checkout")
def test_too_small_arena_is_reported_from_the_hello(tmp_path: Path, sine_npz: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The real firmware on native with an arena above the planned activations (so the
    tool accepts it) but far below what the 64-bit allocator needs."""
    from tinydeploy.arena.search import arena

    head = int(arena(SINE).host64_breakdown["head"])
    rc = main(["validate", str(SINE), "--data", str(sine_npz), "--out", str(tmp_path / "v"),
               "--board", "native", "--tflm-src", TREE, "--arena", str(head)])
    lines = _lines(capsys)
    assert rc == 4, lines
    assert lines[-1].startswith(f"error: arena too small: {head} bytes, needs at least") \
        or f"arena too small: {head} bytes, needs at least" in lines[-1], lines
    assert not any("reflash" in ln or "link" in ln.lower() for ln in lines)


def test_tuned_arena_is_refused_for_a_board_whose_library_differs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from tinydeploy.arena import plan
    from tinydeploy.arena.measure import MeasuredArena

    measured: list[str] = []

    def fake_measure(facts: Any, tree: Any, **_k: Any) -> MeasuredArena:
        measured.append(tree.name)
        return MeasuredArena(facts.name, facts.sha256, 2000, 1500, tree.flavour, tree.name,
                             tree.content_hash, 1990)

    monkeypatch.setattr(plan, "measure_arena", fake_measure)
    other = _tree(tmp_path / "other", ALL_METHODS)  # Fake_TFLM 1.2.3
    out = tmp_path / "fw"
    rc = main(["generate", str(SINE), "--out", str(out), "--board", "nano33ble",
               "--arena", "tuned", "--tflm-src", str(other)])
    lines = _lines(capsys)
    assert rc == 2 and len(lines) == 1 and measured == [], lines
    assert "Fake_TFLM 1.2.3" in lines[0] and "Chirale_TensorFLowLite 2.0.0" in lines[0]
    assert not out.exists()
    # the board's own library (same name and version) is measured and used
    same = _tree(tmp_path / "same", ALL_METHODS)
    (same / "library.properties").write_text("name=Chirale_TensorFLowLite\nversion=2.0.0\n")
    got = plan.plan_tuned(load(SINE), same, ["nano33ble"])
    assert measured == ["Chirale_TensorFLowLite 2.0.0"] and got.size == 2000 + 16
    assert "Chirale_TensorFLowLite 2.0.0" in got.note
    # a pseudo-board builds against the tree: any tree is its library
    assert plan.plan_tuned(load(SINE), other, ["qemu-cm4"]).size == 2016


def test_upstream_cmsis_nn_kernels_get_the_unmodelled_margin() -> None:
    """A tflite-micro checkout's CMSIS-NN keeps FULLY_CONNECTED kernel sums the kernel table
    does not model (sine_mlp: 1,412 B measured on qemu-cm4 against 1,192 B predicted): its
    auto arena gets the unmodelled margin, never the bare prediction."""
    from types import SimpleNamespace

    from tinydeploy.arena.plan import plan_for_tree

    facts = load(SINE)
    up = SimpleNamespace(kind="tflite-micro", flavour="cmsis-nn", name="tflite-micro cmsis-nn")
    ref = SimpleNamespace(kind="tflite-micro", flavour="reference", name="tflite-micro")
    lib = SimpleNamespace(kind="arduino-library", flavour="cmsis-nn", name="Chirale 2.0.0")
    got = plan_for_tree(facts, "auto", up, False)
    assert got.size >= int(got.predicted) + 2048 > plan_for_tree(facts, "auto", ref, False).size
    assert got.size >= 1412 and "does not model" in got.note
    assert plan_for_tree(facts, "auto", lib, False).size < got.size  # Chirale is modelled
