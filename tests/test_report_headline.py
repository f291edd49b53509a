"""The report leads with the answer: headline (verdict, accuracy host vs device, latency in
the board's unit, RAM, flash) and a diagnosis -- saturated inputs as a warning state in the
report and the JSON, a known library defect named when it reproduces the device, 1 LSB on
most samples named as rounding, class names, one confusion matrix when host and device
agree, device vs float model (X-cross), the same latency keys and clock statement on every
board, an example in every command's --help. Runs on the simulated board (seconds)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import needs_tflm
import numpy as np
import pytest

from tinydeploy import cli, tflm_py
from tinydeploy.boards import BOARDS
from tinydeploy.data import Dataset
from tinydeploy.device.sim import start_sim
from tinydeploy.report import facts as rf
from tinydeploy.report import headline as hl
from tinydeploy.report.page import classification_section
from tinydeploy.validation import CSV_HEADER, validate

DATA = Path(__file__).parent / "data"
DIGITS = DATA / "digits_cnn.tflite"
SINE_MLP = DATA / "sine_mlp.tflite"  # two per-channel Dense layers (fc_per_channel defect)


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images[:60] / 16.0).astype(np.float32)[..., None]
    y = d.target[:60].astype(np.float32)
    out = tmp_path_factory.mktemp("digits")
    return Dataset(x_train=x, y_train=y, x_val=x, y_val=y, x_test=x, y_test=y).save(
        out / "d.npz")


def _scaled(npz: Path, factor: float, out: Path) -> Path:
    d = dict(np.load(npz))
    d["x_test"] = d["x_test"] * np.float32(factor)
    np.savez(out, **d)
    return out


def _doc(r) -> dict:  # noqa: ANN001
    return json.loads(r.paths["json"].read_text())


@pytest.mark.parametrize("factor,state", [(1.0, "pass"), (16.0, "warning")])
def test_saturated_inputs_are_a_warning_state(factor: float, state: str, digits_npz: Path,
                                              tmp_path: Path) -> None:
    npz = _scaled(digits_npz, factor, tmp_path / "d.npz")
    r = validate(DIGITS, npz, tmp_path / "v", board="sim")
    doc = _doc(r)
    assert r.passed and doc["passed"]  # host and device agree on clipped data
    assert doc["state"] == r.state == state
    page = r.paths["html"].read_text()
    head = doc["report"]["headline"]
    assert head["accuracy"]["host"] == head["accuracy"]["device"]
    assert head["latency"]["unit"] == "µs" and head["ram"]["bytes"] > 0
    assert head["flash"]["bytes"] == DIGITS.stat().st_size
    # the host reference the verdict was made against is named: tflite-micro, or the
    # stand-in where it is missing (the reference in use, not the package's absence)
    used = "tflite-micro " if tflm_py.available() else "C runtime built for this host"
    assert head["reference"].startswith(used) and f"against: {used}" in r.summary()
    # the headline comes before every table
    assert page.index("class='headline'") < page.index("<h2>Summary")
    if state == "pass":
        assert doc["warnings"] == [] and "Diagnosis" not in page
        assert '<span class="pass">PASS</span>' in page
        return
    (warning,) = doc["warnings"]
    assert "of the x_test values are clipped" in warning
    frac = next(d for d in doc["report"]["diagnosis"] if d["kind"] == "saturation")["fraction"]
    assert 0.3 < frac < 0.7
    assert '<span class="warning">PASS with warnings</span>' in page
    assert page.index("<h2>Diagnosis") < page.index("<h2>Summary")
    assert "PASS with warnings: all 60 samples bit-exact (see the diagnosis)" in page
    assert r.summary().startswith("PASS with warnings") and "warning: " in r.summary()
    # the clipped run still scores lower: the warning is about accuracy, not agreement
    assert head["accuracy"]["device"] < 0.95


@needs_tflm.mark  # the defect / float model runs in the TFLM Python runtime
def test_known_library_defect_is_named_only_when_it_reproduces(tmp_path: Path) -> None:
    x = np.linspace(0, 6, 24, dtype=np.float32)[:, None]
    npz = Dataset(x_train=x, y_train=np.sin(x), x_val=x, y_val=np.sin(x), x_test=x,
                  y_test=np.sin(x)).save(tmp_path / "s.npz")
    with start_sim(SINE_MLP, defect="fc_per_channel") as sim:
        r = validate(SINE_MLP, npz, tmp_path / "v", port=sim.port)
    assert not r.passed and r.state == "fail"
    (cause,) = [d for d in r.report["diagnosis"] if d["level"] == "cause"]
    assert cause["kind"] == "known_defect" and cause["defect"] == "fc_per_channel"
    diag = r.paths["html"].read_text()
    assert "<h2>Diagnosis" in diag and "one weight scale" in diag
    assert "cause: the device's outputs equal the host's with a known TFLM" in r.summary()
    head = r.report["headline"]
    assert head["mae"]["device"] > 10 * head["mae"]["host"]  # regressor: MAE vs labels
    errs = r.report["errors"]
    assert errs["host vs labels"]["nse"] > 0.9 > errs["device vs labels"]["nse"]
    # a device that is wrong in another way (1 LSB off on a few samples): nothing claimed
    with start_sim(SINE_MLP, wrong_outputs=0.2, seed=2) as sim:
        other = validate(SINE_MLP, npz, tmp_path / "w", port=sim.port)
    assert not other.passed and other.differing < 12
    assert not [d for d in other.report["diagnosis"] if d["level"] == "cause"]


def test_one_lsb_on_every_sample_is_named_rounding(digits_npz: Path, tmp_path: Path) -> None:
    with start_sim(DIGITS, wrong_outputs=1.0, seed=5) as sim:
        r = validate(DIGITS, digits_npz, tmp_path / "v", port=sim.port, samples=30)
    assert not r.passed and r.metrics["max_abs_diff_lsb"] == 1 and r.differing == 30
    (cause,) = [d for d in r.report["diagnosis"] if d["level"] == "cause"]
    assert cause["kind"] == "rounding" and "30 of 30 samples" in cause["text"]
    assert "--tolerance-lsb 1" in r.paths["html"].read_text()


def test_rounding_rule() -> None:
    assert hl.rounding(1, 60, 100)["kind"] == "rounding"
    assert hl.rounding(2, 100, 100) is None  # 2 LSB somewhere: not plain rounding
    assert hl.rounding(1, 10, 100) is None  # scattered: not "everywhere"


def test_class_names_and_one_matrix_only_when_host_and_device_agree(digits_npz: Path,
                                                                   tmp_path: Path) -> None:
    model = tmp_path / "m" / "digits_cnn.tflite"
    model.parent.mkdir()
    shutil.copy(DIGITS, model)
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    (model.parent / "labels.txt").write_text("\n".join(names) + "\n")
    r = validate(model, digits_npz, tmp_path / "v", board="sim", samples=20)
    with r.paths["csv"].open(newline="") as f:  # the same columns on every board
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == CSV_HEADER
    assert all(row["time_us"] != "" and row["instructions"] == "" for row in rows)
    c = r.report["classification"]
    assert c["names"] == names and c["agree"]
    html = classification_section(c)
    assert "<th>seven</th>" in html and "<td>seven</td>" in html
    assert html.count("<h3>") == 1
    # a device that predicts another class somewhere: two matrices
    c["agree"] = False
    c["device"]["confusion"][0][0] -= 1
    c["device"]["confusion"][0][1] += 1
    assert classification_section(c).count("<h3>") == 2


@needs_tflm.mark  # the defect / float model runs in the TFLM Python runtime
def test_device_vs_float_model(sine_run, tmp_path: Path) -> None:  # noqa: ANN001
    r = validate(sine_run.int8_tflite, sine_run.data_npz, tmp_path / "v", board="sim",
                 samples=40)
    fr = r.report["float_reference"]
    assert Path(fr["model"]) == Path(sine_run.float_tflite).resolve()
    # the sim is bit-exact with the host: the same error against the float model
    assert fr["device"] == fr["host"] and 0 < fr["device"]["mae"] < 0.2
    assert {"mean", "std", "rmse", "nse"} <= set(fr["device"])
    note = next(d for d in r.report["diagnosis"] if d["kind"] == "float_reference")
    assert "the device adds no error" in note["text"]
    assert "device vs float model" in r.paths["html"].read_text()
    # the int8 model alone (no float .tflite beside it): no comparison, no failure
    alone = tmp_path / "alone" / "model_int8.tflite"
    alone.parent.mkdir()
    shutil.copy(sine_run.int8_tflite, alone)
    r2 = validate(alone, sine_run.data_npz, tmp_path / "w", board="sim", samples=5)
    assert r2.passed and "float_reference" not in r2.report


def test_latency_has_the_same_keys_and_one_clock_statement_on_every_board() -> None:
    t, zero = np.array([10, 12, 11]), np.zeros(3, np.int64)
    qemu = rf.latency(t, np.array([1000, 1200, 1100]), "qemu-cm4")
    native = rf.latency(zero, zero, "native")
    mcu = rf.latency(t, np.array([640, 768, 704]), "nano33ble")
    for lat in (qemu, native, mcu):
        assert {"unit", "stats", "clock", "what"} <= set(lat)
    assert qemu["unit"] == "instructions" and qemu["stats"]["median"] == 1100
    assert qemu["clock"] == BOARDS["qemu-cm4"].clock_text and "MHz" not in qemu["clock"]
    assert native["below_resolution"] == 3
    assert mcu["clock"] == "64 MHz" and mcu["cycles"]["median"] == 704
    assert hl._latency(native, 100)["text"].startswith("< 1 µs")
    assert "instructions/MAC" in hl._latency(qemu, 100)["text"]
    assert hl._latency(mcu, 100)["per_mac"] == pytest.approx(7.04)
    # `tinydeploy boards` states the same clock
    assert "none" in BOARDS["qemu-cm4"].clock_text
    assert BOARDS["qemu-cm4"].to_dict()["clock"] == qemu["clock"]


def test_error_stats() -> None:
    s = rf.error_stats(np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.5, 1.5, 2.5, 3.5]),
                       nse=True)
    assert s["mean"] == pytest.approx(0.5) and s["std"] == pytest.approx(0.0)
    assert s["nse"] == pytest.approx(1 - 1.0 / 5.0)


@pytest.mark.parametrize("command", ["train", "quantize", "check", "inspect", "carray",
                                     "arena", "boards", "generate", "build", "flash",
                                     "validate", "deploy"])
def test_help_shows_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([command, "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"Example: tinydeploy {command}" in out


@needs_tflm.mark  # the defect / float model runs in the TFLM Python runtime
def test_json_of_a_failed_validation_is_one_document(tmp_path: Path) -> None:
    """--json on a FAIL: the results and the error in one JSON document on stdout."""
    import subprocess
    import sys

    x = np.linspace(0, 6, 8, dtype=np.float32)[:, None]
    npz = Dataset(x_train=x, y_train=np.sin(x), x_val=x, y_val=np.sin(x), x_test=x,
                  y_test=np.sin(x)).save(tmp_path / "s.npz")
    with start_sim(SINE_MLP, defect="fc_per_channel") as sim:
        proc = subprocess.run([sys.executable, "-m", "tinydeploy.cli", "validate",
                               str(SINE_MLP), "--data", str(npz), "--port", sim.port,
                               "--out", str(tmp_path / "v"), "--json", "-q"],
                              capture_output=True, text=True, timeout=300)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 6 and doc["state"] == "fail" and not doc["passed"]
    assert doc["error"]["code"] == "validation_failed"
    assert doc["report"]["diagnosis"][0]["kind"] == "known_defect"
