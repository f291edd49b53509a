"""Arena prediction on every reference model (generated + zoo), kernel flavours, CMSIS-NN
scratch sizes, --arena tuned / --target qemu-cm4 errors, and (with a TFLM tree) the
measured minimum on qemu-cm4."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from models import GENERATED, GROUND_TRUTH, ZOO

from tinydeploy.arena import cmsis_nn as cm
from tinydeploy.arena.kernels import scratch_requests
from tinydeploy.arena.predict import predict_flavour
from tinydeploy.arena.replay import CORTEX_M, Graph, simulate
from tinydeploy.arena.search import arena
from tinydeploy.boards import kernel_flavour
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load

DATA = Path(__file__).parent / "data"
ALL = GENERATED + ZOO


@pytest.mark.parametrize("name", ALL)
def test_reference_prediction_vs_cm4_ground_truth(name: str) -> None:
    """Never below the measured Cortex-M4 minimum, at most 2 % above; and the replay's
    arena_used_bytes() with a 1 MiB arena is the measured one, byte for byte."""
    truth = GROUND_TRUTH[name]
    facts = load(DATA / f"{name}.tflite")
    pred = predict_flavour(facts, "reference")
    assert truth["min_arena_cm4"] <= pred <= 1.02 * truth["min_arena_cm4"], pred
    g = Graph.from_facts(facts)
    assert simulate(g, 1 << 20, CORTEX_M)["used"] == truth["arena_used_bytes_cm4"]


def test_lstm_state_and_scratch_are_modelled() -> None:
    g = Graph.from_facts(load(DATA / "trained_lstm_int8.tflite"))
    bd = simulate(g, 1 << 20, CORTEX_M)
    assert bd["variable tensors"] == 32 + 48  # int8 [1,20] and int16 [1,20] state, 16-aligned
    assert [n for _, n in scratch_requests(g)] == [40] * 4  # 4 int16 gate buffers of 20


def test_cmsis_nn_buffer_sizes_by_hand() -> None:
    # arm_convolve_s8: 2 im2col columns of int16 = 2 * C * kw * kh * 2
    assert cm.convolve_wrapper_s8_buffer(1, 8, 8, 8, 3, 3, 8, (1, 1), (1, 1), (1, 1)) == 288
    # 1x1, stride 1, no padding: arm_convolve_1x1_s8_fast needs nothing
    assert cm.convolve_wrapper_s8_buffer(1, 8, 8, 16, 1, 1, 8, (0, 0), (1, 1), (1, 1)) == 0
    # 1x1 with stride 2 goes to the generic kernel: 2 * 16 * 1 * 1 * 2
    assert cm.convolve_wrapper_s8_buffer(1, 8, 8, 16, 1, 1, 4, (0, 0), (2, 2), (1, 1)) == 64
    # ds_cnn first layer: 10x4 filter on 1 channel = 2 * 1 * 4 * 10 * 2
    assert cm.convolve_wrapper_s8_buffer(1, 49, 10, 1, 10, 4, 5, (1, 4), (2, 2), (1, 1)) == 160
    # depthwise, multiplier 1: one int16 window C * kw * kh * 2; multiplier 2: none
    assert cm.depthwise_conv_wrapper_s8_buffer(1, 64, 64, 3, 3, (1, 1)) == 1152
    assert cm.depthwise_conv_wrapper_s8_buffer(1, 8, 16, 3, 3, (1, 1)) == 0
    assert cm.avgpool_s8_buffer(64) == 256
    assert cm.fully_connected_s8_buffer() == 0
    # int16 conv: fast kernel below 512 filter elements, none above
    assert cm.convolve_wrapper_s16_buffer(8, 3, 3, (1, 1)) == 288
    assert cm.convolve_wrapper_s16_buffer(64, 3, 3, (1, 1)) == 0


def test_cmsis_nn_graph_scratch_requests() -> None:
    g = Graph.from_facts(load(DATA / "ds_cnn_kws.tflite"), "cmsis-nn")
    sizes = {g.ops[k].name: [] for k, _ in scratch_requests(g)}
    for k, n in scratch_requests(g):
        sizes[g.ops[k].name].append(n)
    assert sizes["CONV_2D"] == [160]  # the 10x4 stem (1x1 pointwise convs need none)
    assert set(sizes["DEPTHWISE_CONV_2D"]) == {64 * 3 * 3 * 2}
    assert sizes["AVERAGE_POOL_2D"] == [4 * 64]
    # the reference kernels request none of these
    assert scratch_requests(Graph.from_facts(load(DATA / "ds_cnn_kws.tflite"))) == []


@pytest.mark.parametrize("name", ["sine_mlp", "ds_cnn_kws", "trained_lstm_int8",
                                  "seanet_conv0"])
def test_cmsis_nn_prediction_is_a_different_library(name: str) -> None:
    ref = predict_flavour(DATA / f"{name}.tflite", "reference")
    cmsis = predict_flavour(DATA / f"{name}.tflite", "cmsis-nn")
    assert cmsis > 0 and cmsis != ref


def test_board_flavours() -> None:
    assert kernel_flavour("nano33ble") == "cmsis-nn"
    assert kernel_flavour("nucleo_f446re") == "cmsis-nn"
    # esp32-s3 runs Chirale too: CMSIS-NN's portable C path, whose buffers are at most the
    # DSP path's (the prediction's), so the cmsis-nn figure is an upper bound there
    assert kernel_flavour("esp32-s3") == "cmsis-nn"
    assert kernel_flavour("qemu-cm4") == "reference"


def test_cli_arena_json_carries_the_flavoured_size(capsys: pytest.CaptureFixture[str]) -> None:
    from tinydeploy.cli import main

    model = DATA / "ds_cnn_kws.tflite"
    assert main(["arena", str(model), "--board", "nano33ble", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["flavour"] == "cmsis-nn"
    assert out["arena_bytes"] == predict_flavour(model, "cmsis-nn")
    assert out["breakdown"]["predicted minimum"] == out["arena_bytes"]
    assert main(["arena", str(model), "--flavour", "reference", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["arena_bytes"] == GROUND_TRUTH["ds_cnn_kws"]["min_arena_cm4"]
    assert main(["arena", str(model), "--flavour", "esp-nn"]) == 2


def test_tuned_and_qemu_without_tree_fail_clearly(tmp_path: Path, monkeypatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from tinydeploy.cli import main
    from tinydeploy.render import generate

    monkeypatch.delenv("TINYDEPLOY_TFLM_SRC", raising=False)
    with pytest.raises(TinyDeployError) as exc:
        generate(DATA / "sine_mlp.tflite", tmp_path / "fw", boards=["nano33ble"], arena="tuned")
    assert exc.value.code == "tool_missing" and "--tflm-src" in str(exc.value)
    assert not (tmp_path / "fw").exists()
    assert main(["generate", str(DATA / "sine_mlp.tflite"), "-o", str(tmp_path / "fw"),
                 "--arena", "tuned"]) == 7
    assert "--tflm-src" in capsys.readouterr().err
    with pytest.raises(TinyDeployError) as exc:
        arena(DATA / "sine_mlp.tflite", target="qemu-cm4")
    assert exc.value.code == "tool_missing"


# --- measured on qemu-cm4 (needs a TFLM tree; run by hand, see docs) ----------------------------
TREE = os.environ.get("TINYDEPLOY_TFLM_SRC")
needs_tree = pytest.mark.skipif(
    not TREE, reason="set TINYDEPLOY_TFLM_SRC to a TFLM tree (tflite-micro checkout with its "
                     "downloads, or the Chirale_TensorFLowLite library) to measure on qemu-cm4")


@needs_tree
def test_measured_minimum_on_qemu_cm4() -> None:
    from tinydeploy.arena.measure import measure_arena

    m = measure_arena(DATA / "sine_mlp.tflite", TREE)
    assert all(m.verified.values())
    if m.flavour == "reference":  # upstream TFLM: the ground truth's library
        assert m.arena_bytes == GROUND_TRUTH["sine_mlp"]["min_arena_cm4"]
    assert m.arena_bytes <= m.predicted_bytes <= 1.02 * m.arena_bytes
    again = measure_arena(DATA / "sine_mlp.tflite", TREE)
    assert again.cached and again.arena_bytes == m.arena_bytes


CHIRALE = json.loads((DATA / "arena_chirale_cm4.json").read_text())


@pytest.mark.parametrize("name", ALL)
def test_cmsis_nn_prediction_vs_chirale_measured_on_qemu(name: str) -> None:
    """CMSIS-NN flavour vs the minimum measured with Chirale_TensorFlowLite 2.0.0 on
    qemu-cm4 (tests/data/arena_chirale_cm4.json): never below, at most 2 % above; the
    generated `--arena auto` size (prediction + 1 %) likewise."""
    from tinydeploy.arena.plan import plan_auto

    measured = CHIRALE[name]["min_arena"]
    facts = load(DATA / f"{name}.tflite")
    pred = predict_flavour(facts, "cmsis-nn")
    assert measured <= pred <= 1.02 * measured, (pred, measured)
    auto = plan_auto(facts, ["nano33ble"]).size
    assert measured <= auto <= 1.02 * measured, (auto, measured)
