"""deploy: the whole pipeline end to end on the simulated board, and the on-device arena
refinement with flash replaced (the "board" is the simulator's pseudo-terminal).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tinydeploy import cli, render
from tinydeploy import pipeline as dp
from tinydeploy.data import Dataset
from tinydeploy.device import flashing as fl
from tinydeploy.device.sim import start_sim
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load

DATA = Path(__file__).parent / "data"
SINE = DATA / "sine_mlp.tflite"


@pytest.fixture(scope="module")
def sine_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(5)
    x = rng.uniform(0.0, 2 * math.pi, size=(200, 1)).astype(np.float32)
    y = np.sin(x).astype(np.float32)
    ds = Dataset(x_train=x[:100], y_train=y[:100], x_val=x[100:150], y_val=y[100:150],
                 x_test=x[150:], y_test=y[150:])
    return ds.save(tmp_path_factory.mktemp("sine") / "data.npz")


@pytest.mark.slow
def test_deploy_sine_on_sim_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = cli.main(["deploy", "sine", "--board", "sim", "--out", str(out), "--epochs", "3",
                     "--samples", "25"])
    assert code == 0
    doc = json.loads((out / "deploy.json").read_text())
    assert doc["passed"] is True and doc["board"] == "sim"
    assert set(doc["stages_s"]) >= {"train", "quantize", "check", "validate"}
    assert doc["quantization"]["metric"]["name"] == "mae"
    assert doc["validation"]["samples"] == 25
    assert doc["validation"]["metrics"]["exact_match_rate"] == 1.0
    assert Path(doc["int8_model"]).is_file()
    page = (out / "report.html").read_text()
    assert "Stage timings" in page and "Quantization" in page
    assert page.count("data:image/png;base64,") == 4  # + predicted vs true (regressor)


def test_deploy_tflite_skips_training(sine_npz: Path, tmp_path: Path) -> None:
    res = dp.deploy(SINE, tmp_path / "d", board="sim", data=sine_npz, samples=10)
    assert res.passed and "train" not in res.stages and "quantize" not in res.stages
    assert res.int8_path == SINE and (tmp_path / "d" / "deploy.json").is_file()
    assert "PASS" in res.summary()


def test_deploy_model_needs_data(tmp_path: Path) -> None:
    with pytest.raises(TinyDeployError) as err:
        dp.deploy(SINE, tmp_path / "d", board="sim")
    assert err.value.code == "bad_argument" and "--data" in str(err.value)
    assert not (tmp_path / "d").exists()
    with pytest.raises(TinyDeployError) as err:
        dp.deploy(SINE, tmp_path / "d", board="sim", data=DATA / "x.npz")
    assert err.value.code == "file_not_found"
    with pytest.raises(TinyDeployError) as err:
        dp.deploy(SINE, tmp_path / "d", board="sim", data=SINE, tune_arena=True)
    assert err.value.code == "bad_argument" and "--tune-arena" in str(err.value)
    with pytest.raises(TinyDeployError) as err:
        dp.deploy("nosuchexample", tmp_path / "d", board="sim")
    assert err.value.code == "unknown_example" and "sine" in str(err.value)
    with pytest.raises(TinyDeployError) as err:
        dp.deploy("sine", tmp_path / "d", board="nosuchboard")
    assert err.value.code == "unknown_board"
    assert not (tmp_path / "d").exists()


def test_missing_board_fails_before_training(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("serial.tools.list_ports.comports", lambda: [])
    trained: list[str] = []
    monkeypatch.setattr("tinydeploy.training.train", lambda *a, **k: trained.append("x"))
    code = cli.main(["deploy", "sine", "--board", "nano33ble", "--out", str(tmp_path / "d")])
    assert code == 5 and not trained and not (tmp_path / "d").exists()


def test_tune_arena_reflashes_with_the_measured_arena(
        sine_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generated: list[dict[str, Any]] = []
    flashed: list[Path] = []

    def fake_generate(model: Any, out: Path, boards: list[str], arena: Any = "auto",
                      fmt: str = "both", runtime: str = "tflm",
                      data: Any = None) -> SimpleNamespace:
        generated.append({"boards": boards, "arena": arena, "fmt": fmt})
        proj = Path(out) / "platformio"
        proj.mkdir(parents=True, exist_ok=True)
        (proj / "platformio.ini").write_text(f"[env:{boards[0]}]\nboard = x\n")
        return SimpleNamespace(platformio_dir=proj)

    with start_sim(SINE) as sim:
        def fake_flash(project: Path, board: Any, port: str | None = None) -> fl.FlashResult:
            assert (Path(project) / "platformio.ini").is_file()
            flashed.append(Path(project))
            return fl.FlashResult(project=Path(project), board="nano33ble", env="nano33ble",
                                  port=sim.port, command=["pio"], seconds=0.0)

        monkeypatch.setattr(render, "generate", fake_generate)
        monkeypatch.setattr(fl, "flash", fake_flash)
        monkeypatch.setattr(fl, "find_port", lambda board: sim.port)
        res = dp.deploy(SINE, tmp_path / "d", board="nano33ble", data=sine_npz, samples=5,
                        tune_arena=True)
    assert res.passed and len(flashed) == 2
    used = res.arena["arena_used"]
    assert used > 0
    assert [g["arena"] for g in generated] == ["auto", str(dp.tuned_arena(used))]
    assert used < dp.tuned_arena(used) <= used + max(2048, used // 4) + 16
    assert all(g["boards"] == ["nano33ble"] for g in generated)
    doc = json.loads((tmp_path / "d" / "deploy.json").read_text())
    assert doc["arena"]["arena_size"] == dp.tuned_arena(used)


def test_failed_validation_still_writes_the_report(
        sine_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_generate(model: Any, out: Path, boards: list[str], **kw: Any) -> SimpleNamespace:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "platformio.ini").write_text(f"[env:{boards[0]}]\n")
        return SimpleNamespace(platformio_dir=Path(out))

    out = tmp_path / "d"
    with start_sim(SINE, wrong_outputs=1.0) as sim:
        monkeypatch.setattr(render, "generate", fake_generate)
        monkeypatch.setattr(fl, "flash", lambda project, board, port=None: fl.FlashResult(
            Path(project), "rpipico", "rpipico", sim.port, ["pio"], 0.0))
        monkeypatch.setattr(fl, "find_port", lambda board: sim.port)
        code = cli.main(["deploy", str(SINE), "--board", "rpipico", "--data", str(sine_npz),
                         "--out", str(out), "--samples", "8"])
    assert code == 6
    doc = json.loads((out / "deploy.json").read_text())
    assert doc["passed"] is False and doc["validation"]["differing"] == 8
    assert set(doc["stages_s"]) >= {"check", "generate", "flash", "validate"}
    assert "FAIL" in (out / "report.html").read_text()


@pytest.mark.parametrize("board", ["native", "qemu-cm4"])
def test_deploy_tflite_to_compiled_board(board: str, tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    if board == "qemu-cm4" and not (shutil.which("arm-none-eabi-gcc")
                                    and shutil.which("qemu-system-arm")):
        pytest.skip("ARM toolchain / QEMU not installed (scripts/setup installs them)")
    d = load_digits()
    x = (d.images[:120] / 16.0).astype(np.float32)[..., None]
    y = d.target[:120].astype(np.float32)
    npz = Dataset(x[:60], y[:60], x[60:90], y[60:90], x[90:], y[90:]).save(tmp_path / "d.npz")
    res = dp.deploy(DATA / "digits_cnn.tflite", tmp_path / "n", board=board, data=npz)
    assert res.passed and res.validation.samples == 30
    assert res.validation.metrics["top1_agreement"] == 1.0
    assert "build" in res.stages and (tmp_path / "n" / "device").is_dir()
    assert res.validation.device["runtime"] == "c"
    doc = json.loads((tmp_path / "n" / "deploy.json").read_text())
    build = doc["device_build"]["native" if board == "native" else "qemu"]
    assert build["model_sha256"] == load(DATA / "digits_cnn.tflite").sha256


def test_wrong_port_fails_before_training(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    trained: list[str] = []
    monkeypatch.setattr("tinydeploy.training.train", lambda *a, **k: trained.append("x"))
    bad = str(tmp_path / "no-such-tty")
    code = cli.main(["deploy", "sine", "--board", "nano33ble", "--port", bad,
                     "--out", str(tmp_path / "d")])
    assert code == 5 and not trained and not (tmp_path / "d").exists()


def test_out_below_a_file_fails_before_training(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    trained: list[str] = []
    monkeypatch.setattr("tinydeploy.training.train", lambda *a, **k: trained.append("x"))
    (tmp_path / "afile").write_text("x")
    code = cli.main(["deploy", "sine", "--board", "sim", "--out", str(tmp_path / "afile" / "d")])
    assert code == 2 and not trained


def test_tune_arena_with_a_tflm_tree_uses_the_measured_minimum(
        sine_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--tune-arena --tflm-src: regenerate with --arena tuned (qemu-cm4 measurement of that
    library + 16 B) instead of the device's arena_used plus the 25 % margin."""
    generated: list[dict[str, Any]] = []

    def fake_generate(model: Any, out: Path, boards: list[str], arena: Any = "auto",
                      fmt: str = "both", runtime: str = "tflm",
                      tflm_src: Any = None, data: Any = None) -> SimpleNamespace:
        generated.append({"arena": arena, "tflm_src": tflm_src})
        proj = Path(out) / "platformio"
        proj.mkdir(parents=True, exist_ok=True)
        (proj / "platformio.ini").write_text(f"[env:{boards[0]}]\nboard = x\n")
        plan = SimpleNamespace(size=1208, predicted=1192, note="measured minimum 1192 B + 16 B")
        return SimpleNamespace(platformio_dir=proj, arena=plan)

    with start_sim(SINE) as sim:
        def fake_flash(project: Path, board: Any, port: str | None = None) -> fl.FlashResult:
            return fl.FlashResult(project=Path(project), board="nano33ble", env="nano33ble",
                                  port=sim.port, command=["pio"], seconds=0.0)

        monkeypatch.setattr(render, "generate", fake_generate)
        monkeypatch.setattr(fl, "flash", fake_flash)
        monkeypatch.setattr(fl, "find_port", lambda board: sim.port)
        res = dp.deploy(SINE, tmp_path / "d", board="nano33ble", data=sine_npz, samples=5,
                        tune_arena=True, tflm_src="/some/Chirale_TensorFLowLite")
    assert res.passed
    assert generated[1] == {"arena": "tuned", "tflm_src": "/some/Chirale_TensorFLowLite"}
    assert res.arena["arena_size"] == 1208 and res.arena["arena_measured"] == 1192


def test_deploy_c_runtime_to_a_flashable_board(
        sine_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``deploy --runtime c`` uploads the C runtime's PlatformIO project (its validation
    server env) and validates it; --tune-arena is refused for it (the arena is exact)."""
    flashed: list[Path] = []
    with start_sim(SINE) as sim:
        def fake_flash(project: Path, board: Any, port: str | None = None) -> fl.FlashResult:
            ini = (Path(project) / "platformio.ini").read_text()
            assert "[env:nano33ble]" in ini
            assert any(Path(project).rglob("td_model.c"))  # the C runtime, not TFLM
            flashed.append(Path(project))
            return fl.FlashResult(project=Path(project), board="nano33ble", env="nano33ble",
                                  port=sim.port, command=["pio"], seconds=0.0)

        monkeypatch.setattr(fl, "flash", fake_flash)
        monkeypatch.setattr(fl, "find_port", lambda board: sim.port)
        monkeypatch.setattr(fl, "pio_command", lambda: ["pio"])
        res = dp.deploy(SINE, tmp_path / "d", board="nano33ble", data=sine_npz, samples=5,
                        runtime="c")
        assert res.passed and len(flashed) == 1
        code = cli.main(["deploy", str(SINE), "--board", "nano33ble", "--runtime", "c",
                         "--tune-arena", "--data", str(sine_npz), "--out", str(tmp_path / "e")])
    assert code == 2 and not (tmp_path / "e").exists()
