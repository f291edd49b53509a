"""CLI exit codes: 0 when it works, otherwise one ``error:`` line and no traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinydeploy.cli import main

DATA = Path(__file__).parent / "data"


def _one_error_line(capfd, *needles: str) -> str:
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _splits(shape: tuple[int, ...], n: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {f"{p}_{s}": rng.random((n, *shape) if p == "x" else (n, 1)).astype(np.float32)
            for s in ("train", "val", "test") for p in ("x", "y")}


def test_unknown_example(capfd, tmp_path: Path) -> None:
    assert main(["train", "nope", "--out", str(tmp_path / "o")]) == 2
    _one_error_line(capfd, "unknown example 'nope'", "sine")
    assert not (tmp_path / "o").exists()


def test_bad_epochs(capfd, tmp_path: Path) -> None:
    assert main(["train", "sine", "--out", str(tmp_path / "o"), "--epochs", "0"]) == 2
    _one_error_line(capfd, "--epochs")


def test_missing_model_and_data(capfd, tmp_path: Path) -> None:
    assert main(["quantize", str(tmp_path / "none.keras"), "--data", str(tmp_path / "d.npz"),
                 "--out", str(tmp_path / "o")]) == 2
    _one_error_line(capfd, "not found", "none.keras")
    assert main(["train", str(tmp_path / "none.keras"), "--data", str(tmp_path / "d.npz"),
                 "--out", str(tmp_path / "o")]) == 2
    _one_error_line(capfd, "not found")
    assert not (tmp_path / "o").exists()


def test_keras_model_without_data(capfd, sine_run, tmp_path: Path) -> None:
    assert main(["train", str(sine_run.model_keras), "--out", str(tmp_path / "o")]) == 2
    _one_error_line(capfd, "--data")


def test_missing_data_file(capfd, sine_run, tmp_path: Path) -> None:
    assert main(["quantize", str(sine_run.model_keras), "--data", str(tmp_path / "d.npz"),
                 "--out", str(tmp_path / "o")]) == 2
    _one_error_line(capfd, "data file not found")


def test_not_a_keras_file(capfd, sine_run, tmp_path: Path) -> None:
    fake = tmp_path / "fake.keras"
    fake.write_text("not a zip")
    assert main(["quantize", str(fake), "--data", str(sine_run.data_npz),
                 "--out", str(tmp_path / "o")]) == 2
    _one_error_line(capfd, "cannot load Keras model")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("case", ["missing_keys", "bad_shape", "count_mismatch", "not_npz",
                                  "strings", "nan", "label_shapes", "scalar"])
def test_bad_npz(capfd, sine_run, tmp_path: Path, case: str) -> None:
    arrays = _splits((1,))
    expected = {"missing_keys": "missing keys y_test", "bad_shape": "x_test samples have shape",
                "count_mismatch": "x_val has 8 samples but y_val has 3",
                "not_npz": "not a readable .npz", "strings": "y_test holds <U3 values",
                "nan": "x_train contains NaN or inf",
                "label_shapes": "label rows differ between splits",
                "scalar": "y_val is a single number"}[case]
    path = tmp_path / "d.npz"
    if case == "missing_keys":
        del arrays["y_test"]
    elif case == "bad_shape":
        arrays["x_test"] = np.zeros((8, 2), np.float32)
    elif case == "count_mismatch":
        arrays["y_val"] = arrays["y_val"][:3]
    elif case == "strings":
        arrays["y_test"] = np.array(["cat"] * 8)
    elif case == "nan":
        arrays["x_train"][2, 0] = np.nan
    elif case == "label_shapes":
        arrays["y_train"] = arrays["y_train"][:, 0]
    elif case == "scalar":
        arrays["y_val"] = np.float32(1)
    if case == "not_npz":
        path.write_text("garbage")
    else:
        _npz(path, **arrays)
    out = tmp_path / "o"
    assert main(["quantize", str(sine_run.model_keras), "--data", str(path),
                 "--out", str(out)]) == 2
    _one_error_line(capfd, expected)
    assert not out.exists()
    assert main(["train", str(sine_run.model_keras), "--data", str(path), "--out", str(out),
                 "--epochs", "1"]) == 2
    _one_error_line(capfd, expected)
    assert not out.exists()


def test_shape_mismatch_with_model(capfd, sine_run, tmp_path: Path) -> None:
    path = _npz(tmp_path / "d.npz", **_splits((3,)))
    assert main(["quantize", str(sine_run.model_keras), "--data", str(path),
                 "--out", str(tmp_path / "o")]) == 2
    _one_error_line(capfd, "expected (1,)")


def test_quantize_cli_ok(capfd, sine_run, tmp_path: Path) -> None:
    out = tmp_path / "q"
    assert main(["quantize", str(sine_run.model_keras), "--data", str(sine_run.data_npz),
                 "--out", str(out), "--rep-samples", "50"]) == 0
    assert "model_int8.tflite" in capfd.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "model_float.tflite", "model_int8.tflite", "quantization.json", "quantization.md"]
    assert '"samples": 50' in (out / "quantization.json").read_text()


def test_console_script_subprocess(tmp_path: Path) -> None:
    exe = shutil.which("tinydeploy")
    cmd = [exe] if exe else [sys.executable, "-m", "tinydeploy.cli"]
    bad = tmp_path / "bad.tflite"
    bad.write_bytes((DATA / "sine_mlp.tflite").read_bytes()[:200])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([*cmd, "check", str(bad)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 3
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "truncated" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    proc = subprocess.run([*cmd, "check", str(DATA / "sine_mlp.tflite")],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0 and proc.stdout.startswith("ok:")


def test_out_is_a_file(capfd, sine_run, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "sub"):
        assert main(["quantize", str(sine_run.model_keras), "--data", str(sine_run.data_npz),
                     "--out", str(out)]) == 2
        _one_error_line(capfd, "exists and is not a directory")
        assert main(["train", "sine", "--out", str(out)]) == 2
        _one_error_line(capfd, "exists and is not a directory")
    assert afile.read_text() == "x"


@pytest.mark.parametrize("labels, needle", [
    (np.zeros((8, 2), np.float32), "must have rank"),  # 2 columns, the model has 10 outputs
    (np.full(8, 12, np.float32), "label value of 12"),  # class 12 of 10
])
def test_labels_that_do_not_fit_the_model(capfd, monkeypatch, digits_run, tmp_path: Path,
                                          labels: np.ndarray, needle: str) -> None:
    from tinydeploy import log as tdlog

    monkeypatch.setattr(tdlog.log, "handlers", [])  # log to this test's stderr
    arrays = _splits((8, 8, 1))
    for s in ("train", "val", "test"):
        arrays[f"y_{s}"] = labels
    path = _npz(tmp_path / "d.npz", **arrays)
    out = tmp_path / "o"
    assert main(["train", str(digits_run.model_keras), "--data", str(path), "--out", str(out),
                 "--epochs", "1"]) == 2
    _, err = capfd.readouterr()
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert "Traceback" not in err and len(errors) == 1
    assert "the labels do not fit the model" in errors[0] and needle in errors[0]
    assert not out.exists()


def test_lambda_layer_model(capfd, sine_run, tmp_path: Path) -> None:
    import keras

    inp = keras.Input((1,))
    model = keras.Model(inp, keras.layers.Lambda(lambda t: t * 2.0)(inp))
    model.save(tmp_path / "lam.keras")
    assert main(["quantize", str(tmp_path / "lam.keras"), "--data", str(sine_run.data_npz),
                 "--out", str(tmp_path / "o")]) == 3
    _one_error_line(capfd, "Lambda layer", "replace the Lambda layer")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, needle", [
    (["train", "sine", "--out", "o", "--epochs", "abc"], "Invalid value for '--epochs'"),
    (["quantize", "m.keras", "--out", "o", "--rep-samples", "x", "--data", "d.npz"],
     "Invalid value for '--rep-samples'"),
    (["nosuchcmd"], "No such command"),
    (["generate"], "Missing argument"),
])
def test_usage_errors_are_one_line(capfd, argv: list[str], needle: str) -> None:
    assert main(argv) == 2
    _one_error_line(capfd, needle, "--help")


def test_ctrl_c_exits_130_with_one_line(monkeypatch, capfd) -> None:  # type: ignore[no-untyped-def]
    import tinydeploy.guard as guard_module
    from tinydeploy import cli

    def interrupted(model):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(guard_module, "check", interrupted)
    assert cli.main(["check", "any.tflite"]) == 130
    err = capfd.readouterr().err
    assert "interrupted" in err and "Traceback" not in err
