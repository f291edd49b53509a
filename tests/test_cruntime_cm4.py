"""The C runtime's Cortex-M4 fast paths (DSP extension: SXTB16/SMLAD, ...) and their
portable C fallback, on the emulated board qemu-cm4: both bit-exact with the stored Cortex-M4
ground truth and with the TFLM Python runtime on random per-operator models; the per-layer
profile of a ``TD_PROFILE`` build adds up to the whole inference."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import needs_tflm
import numpy as np
import pytest
from test_cruntime_ops import op_models  # noqa: F401  (session fixture, shared)

from tinydeploy.cruntime.graph import read_graph
from tinydeploy.facts import load
from tinydeploy.hostref import HostModel

for _tool in ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm"):
    if shutil.which(_tool) is None:
        pytest.skip(f"{_tool} not installed (apt-get install gcc-arm-none-eabi "
                    "libnewlib-arm-none-eabi qemu-system-arm)", allow_module_level=True)

from tinydeploy.device.link import Link  # noqa: E402
from tinydeploy.device.qemu import build_info, start_qemu  # noqa: E402

DATA = Path(__file__).parent / "data"


def _run(path: Path, work: Path, x: np.ndarray, defines: tuple[str, ...] = (),
         profile: bool = False) -> tuple[np.ndarray, list[int]]:
    """Outputs and instruction counts of every sample on a freshly built qemu-cm4."""
    facts = load(path)
    out = facts.outputs[0]
    ys, cycles = [], []
    with start_qemu(path, work, defines=defines, profile=profile) as proc, \
            Link(proc.port, timeout=30.0) as link:
        link.hello()
        for i in range(len(x)):
            reply = link.infer(np.ascontiguousarray(x[i]).tobytes())
            ys.append(np.frombuffer(bytes(reply.output), dtype=out.numpy_dtype))
            cycles.append(int(reply.cycles))
    return np.stack(ys).reshape((len(x), *out.shape[1:])), cycles


@pytest.mark.parametrize("name", ["digits_cnn", "micro_speech_quantized", "trained_lstm_int8"])
def test_dsp_and_forced_portable_paths_equal_cm4(name: str, tmp_path: Path) -> None:
    x = np.load(DATA / f"{name}.inputs.npy")[:6]
    want = np.load(DATA / f"{name}.outputs_cm4.npy")[:6]
    y_dsp, c_dsp = _run(DATA / f"{name}.tflite", tmp_path / "dsp", x)
    y_port, c_port = _run(DATA / f"{name}.tflite", tmp_path / "portable", x, ("-DTD_PORTABLE",))
    assert y_dsp.tobytes() == want.tobytes()
    assert y_port.tobytes() == want.tobytes()
    assert "-DTD_PORTABLE" in build_info(tmp_path / "portable")["flags"]
    # the DSP build really runs other code: fewer instructions for the same inputs
    assert sum(c_dsp) < 0.8 * sum(c_port)


@pytest.mark.parametrize("case", ["wide", "general", "right-shifts"])
@needs_tflm.mark
def test_random_lstm_dsp_and_portable_equal_tflm(case: str, tmp_path: Path) -> None:
    """The LSTM kernel's SXTB16/SMLAD/SMMULR/SSAT path and its plain C one equal TFLM on
    random LSTMs (column tails; each requantization form)."""
    from test_cruntime_ext_ops import LSTM_CASES, random_lstm

    seed, sizes, big_bias, w_div, _ = LSTM_CASES[case]
    path = tmp_path / "lstm.tflite"
    path.write_bytes(random_lstm(seed, (1, *sizes[1:]) if sizes else None, big_bias,
                                 w_scale_div=w_div))
    facts = load(path)
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(6, *facts.inputs[0].shape[1:]), dtype=np.int8)
    x[0], x[1] = -128, 127
    ref = HostModel(facts).predict(x)
    for build, defines in (("dsp", ()), ("portable", ("-DTD_PORTABLE",))):
        y, _ = _run(path, tmp_path / build, x, defines)
        np.testing.assert_array_equal(y, ref.reshape(y.shape), err_msg=build)


CM4_CASES = [("conv", 0), ("conv", 4), ("conv_1x1c1", 0), ("conv_1x1c1", 1),
             ("dwconv", 0), ("dwconv", 4), ("dense", 1), ("avgpool", 1), ("add", 0),
             ("softmax", 0), ("pad", 0), ("concat", 0),
             ("transpose", 0), ("transpose", 3)]


@pytest.mark.parametrize(("case", "seed"), CM4_CASES, ids=[f"{c}-{s}" for c, s in CM4_CASES])
@needs_tflm.mark
def test_random_op_models_bit_exact_on_cm4(op_models: Callable[[str, int], Path],  # noqa: F811
                                           case: str, seed: int, tmp_path: Path) -> None:
    path = op_models(case, seed)
    facts = load(path)
    rng = np.random.default_rng(seed + 7)
    x = rng.integers(-128, 128, size=(12, *facts.inputs[0].shape[1:]), dtype=np.int8)
    x[0], x[1], x[2] = -128, 127, facts.inputs[0].zero_point
    y, _ = _run(path, tmp_path / "fw", x)
    ref = HostModel(facts).predict(x).reshape(y.shape)
    bad = np.argwhere(y != ref)
    assert bad.size == 0, f"{case}-{seed}: {len(bad)} bytes differ, first at {bad[0].tolist()}"


def test_profile_layers_add_up_to_the_inference(tmp_path: Path) -> None:
    from tinydeploy.profile import layers

    name = "digits_cnn"
    x = np.load(DATA / f"{name}.inputs.npy")[:3]
    y, cycles = _run(DATA / f"{name}.tflite", tmp_path / "fw", x, profile=True)
    assert y.tobytes() == np.load(DATA / f"{name}.outputs_cm4.npy")[:3].tobytes()
    rows = layers(load(DATA / f"{name}.tflite"), tmp_path / "fw" / "profile.txt", "qemu-cm4")
    assert [r["op"] for r in rows] == [op.name for op in read_graph(load(
        DATA / f"{name}.tflite")).ops]
    total = sum(r["cost"] for r in rows)
    # per-layer SysTick deltas (40 instructions each) vs the whole td_invoke()
    assert abs(total - np.mean(cycles)) <= 0.05 * np.mean(cycles)
    conv = next(r for r in rows if r["op"] == "CONV_2D")
    assert conv["cost"] > 0 and abs(sum(r["share_pct"] for r in rows) - 100) < 0.1
    info = json.loads((tmp_path / "fw" / "qemu.json").read_text())
    assert "-DTD_PROFILE" in info["flags"]


def test_profile_names_the_call_a_patch_stage_runs_in(tmp_path: Path) -> None:
    """residual_cnn runs ops 0..4 as one patch stage (--patch auto): their cost is all in op
    0's marks; the table says so for ops 1..4 instead of showing them free."""
    from tinydeploy.profile import layers, report_section

    name = "residual_cnn"
    x = np.load(DATA / f"{name}.inputs.npy")[:2]
    y, _ = _run(DATA / f"{name}.tflite", tmp_path / "fw", x, profile=True)
    assert y.tobytes() == np.load(DATA / f"{name}.outputs_cm4.npy")[:2].tobytes()
    rows = layers(load(DATA / f"{name}.tflite"), tmp_path / "fw" / "profile.txt", "qemu-cm4")
    assert [r.get("in_op") for r in rows[:6]] == [None, 0, 0, 0, 0, None]
    assert rows[0]["share_pct"] > 50
    table = report_section(rows, "qemu-cm4")
    assert table[f"op 3 ADD {rows[3]['output_shape']}"] == "in op 0's call (counted there)"
