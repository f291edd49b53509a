"""Verdicts at the limits: a model whose arena exceeds 1 MiB, inferences slower than the
link's base timeout (predicted instructions / board speed, --timeout), and the arena probe
telling a slow inference from a failing one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import needs_tflm
import numpy as np
import pytest

from tinydeploy import cli
from tinydeploy.boards import get_board
from tinydeploy.device.timing import infer_seconds, predicted_instructions
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load
from tinydeploy.hostref import DEFAULT_ARENA, HostModel
from tinydeploy.validation import validate

ROOT = Path(__file__).parents[1]
DATA = ROOT / "tests" / "data"
GROUND_TRUTH = json.loads((DATA / "ground_truth.json").read_text())


@pytest.fixture(scope="module")
def big_arena(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8x8x20 int8 in, padded to 256x256x20 (1.3 MB), ReLU (another 1.3 MB), pooled and
    averaged to 20 values: a 2.6 MB arena, cheap to run."""
    import keras

    from tinydeploy.quantization import to_tflite

    x_in = keras.Input((8, 8, 20), batch_size=1)
    y = keras.layers.ReLU()(keras.layers.ZeroPadding2D(124)(x_in))
    y = keras.layers.GlobalAveragePooling2D()(keras.layers.MaxPooling2D(8)(y))
    rep = np.random.default_rng(0).normal(0, 1, (8, 8, 8, 20)).astype(np.float32)
    path = tmp_path_factory.mktemp("big") / "big_arena.tflite"
    path.write_bytes(to_tflite(keras.Model(x_in, y), rep))
    return path


@needs_tflm.mark
def test_arena_over_1_mib_gets_a_verdict(big_arena: Path, tmp_path: Path) -> None:
    from tflite_micro.python.tflite_micro import runtime

    facts = load(big_arena)
    with pytest.raises(RuntimeError):  # the fixed 1 MiB arena of before: no reference
        runtime.Interpreter.from_bytes(facts.data, arena_size=DEFAULT_ARENA)
    assert HostModel(facts).arena_size > 2 * 2_621_440
    data = tmp_path / "d.npz"
    np.savez(data, x_test=np.random.default_rng(1).normal(0, 1, (3, 8, 8, 20)).astype(
        np.float32))
    r = validate(big_arena, data, tmp_path / "v", board="native")
    assert r.passed and r.samples == 3 and r.metrics["exact_match_rate"] == 1.0


# --- reply timeouts ---------------------------------------------------------------------------
def _c_runtime_counts() -> dict[str, int]:
    """The C runtime's instructions per model on qemu-cm4 (DSP and portable builds; the
    larger), from the benchmark results in the repository."""
    counts: dict[str, int] = {}
    for name in ("cortex_m4_speed_after.txt", "cortex_m4_speed_after_portable.txt"):
        for line in (ROOT / "benchmarks" / "results" / name).read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and parts[1].isdigit():
                counts[parts[0]] = max(counts.get(parts[0], 0), int(parts[1]))
    return counts


def test_predicted_instructions_bound_the_measured_ones() -> None:
    """On all 18 reference models: at least the measured TFLM-reference count (ground
    truth, Cortex-M4) and the C runtime's count; not absurdly more for the big ones."""
    c_counts = _c_runtime_counts()
    assert len(c_counts) == len(GROUND_TRUTH) == 18
    for name, truth in GROUND_TRUTH.items():
        facts = load(DATA / f"{name}.tflite")
        tflm, c = predicted_instructions(facts, "tflm"), predicted_instructions(facts, "c")
        assert tflm >= 1.4 * truth["cm4_instr_tflm_ref"], name
        assert c >= 2.5 * c_counts[name], name  # room for the C runtime's slow paths
        if truth["cm4_instr_tflm_ref"] > 10_000_000:
            assert tflm <= 3 * truth["cm4_instr_tflm_ref"], name


def test_slow_model_on_qemu_is_given_its_time() -> None:
    """A 1.3 G-instruction inference on qemu-cm4 is given at least the time it takes at
    the slowest emulation speed (the old fixed budget, 2 + 4 + 8 + 16 s, said "no answer"
    after 30 s)."""
    qemu = get_board("qemu-cm4")
    assert 10_000_000 <= qemu.slowest_ips <= 50_000_000  # measured: 178-525 M/s
    facts = load(DATA / "person_detect.tflite")  # 525 M instructions with TFLM ref kernels
    one = infer_seconds(facts, qemu, "tflm")
    assert one >= GROUND_TRUTH["person_detect"]["cm4_instr_tflm_ref"] / qemu.slowest_ips
    scale = 1.3e9 / GROUND_TRUTH["person_detect"]["cm4_instr_tflm_ref"]
    needed = 1.3e9 / qemu.slowest_ips  # 65 s at the slowest emulation speed
    assert one * scale >= needed > 30.0


def test_infer_waits_for_a_slow_device_and_names_the_option() -> None:
    from tinydeploy.device.link import Link
    from tinydeploy.device.sim import start_sim

    facts = load(DATA / "sine_mlp.tflite")
    x = bytes(facts.inputs[0].nbytes)
    with start_sim(facts, infer_delay=1.0) as sim:
        with Link(sim.port, timeout=0.2, retries=1, boot_wait=5.0) as link:
            link.hello()
            with pytest.raises(TinyDeployError) as err:
                link.infer(x)  # 0.2 + 0.4 s of waits for a 1 s inference
        assert err.value.code == "inference_timeout" and "--timeout" in str(err.value)
        with Link(sim.port, timeout=0.2, retries=1, boot_wait=5.0,
                  infer_seconds=1.5) as link:
            link.hello()
            assert len(link.infer(x).output) == facts.outputs[0].nbytes


def test_timeout_option(tmp_path: Path) -> None:
    data = tmp_path / "d.npz"
    np.savez(data, x_test=np.zeros((2, 1), np.float32))
    model = str(DATA / "sine_mlp.tflite")
    base = ["validate", model, "--data", str(data), "--board", "sim"]
    assert cli.main([*base, "--out", str(tmp_path / "a"), "--timeout", "-1"]) == 2
    assert cli.main([*base, "--out", str(tmp_path / "b"), "--timeout", "30"]) == 0
    assert cli.main(["arena", model, "--timeout", "5"]) == 2  # only for --target qemu-cm4


# --- the arena probe: slow is not failing ------------------------------------------------------
def _fake_probe(lines: str) -> subprocess.Popen[bytes]:
    script = f"import sys, time; sys.stdout.write({lines!r}); sys.stdout.flush(); time.sleep(30)"
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


@pytest.mark.parametrize(("lines", "want"), [
    ("TD_PROBE START 4096\nTD_PROBE ALLOCATED 4096\n", "slow"),
    ("TD_PROBE START 4096\n", "hang"),
    ("TD_PROBE START 4096\nTD_PROBE ALLOCATED 4096\nTD_PROBE OK 3000\n", "ok"),
    ("TD_PROBE START 4096\nTD_PROBE FAIL allocate 0\n", "fail"),
])
def test_probe_trial_tells_slow_from_failing(lines: str, want: str) -> None:
    from tinydeploy.arena.measure import read_trial, trial_timeout

    proc = _fake_probe(lines)
    try:
        result, started, used = read_trial(proc, 4096, 1.0)
    finally:
        proc.kill()
        proc.wait()
    assert (result, started) == (want, True)
    assert used == (3000 if want == "ok" else None)
    facts = load(DATA / "person_detect.tflite")
    assert trial_timeout(facts) >= 60 + 525e6 / get_board("qemu-cm4").slowest_ips
    assert trial_timeout(facts, timeout=5.0) == 65.0
