"""Train the three examples (few epochs), quantize to full int8, check the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tinydeploy.data import Dataset, load_data
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load
from tinydeploy.hostref import dequantize, quantize_input
from tinydeploy.hostref_native import reference_model
from tinydeploy.quantization import metric, representative, task_of

DATA = Path(__file__).parent / "data"


def _int8_metric(run) -> tuple[str, float]:
    """Score the int8 model independently of quantize's own report."""
    facts = load(run.int8_tflite)
    data = load_data(run.data_npz)
    host = reference_model(facts)
    pred = dequantize(host.predict(quantize_input(data.x_test, facts.inputs[0])),
                      facts.outputs[0])
    return metric(run.train.task, pred, data.y_test)


def _check_common(run, task: str) -> dict:
    for path in (run.model_keras, run.data_npz, run.int8_tflite, run.float_tflite,
                 run.report_json, run.report_md):
        assert Path(path).is_file(), path
    assert run.train.task == task and run.quant.task == task
    facts = load(run.int8_tflite)
    assert facts.inputs[0].dtype == "INT8" and facts.outputs[0].dtype == "INT8"
    assert facts.inputs[0].shape[0] == 1  # batch fixed to 1
    # loads and runs in the TFLM runtime
    q = quantize_input(load_data(run.data_npz).x_test[:1], facts.inputs[0])
    out = reference_model(facts).predict(q)
    assert out.dtype == np.int8 and out.shape[0] == 1
    report = json.loads(Path(run.report_json).read_text())
    sizes = report["sizes_bytes"]
    assert sizes["int8_tflite"] == Path(run.int8_tflite).stat().st_size
    assert sizes["float_tflite"] == Path(run.float_tflite).stat().st_size
    assert sizes["keras"] == Path(run.model_keras).stat().st_size
    roles = {t["role"]: t for t in report["tensors"]}
    assert roles["input"]["scale"] == pytest.approx(facts.inputs[0].scale)
    assert roles["input"]["zero_point"] == facts.inputs[0].zero_point
    assert roles["output"]["zero_point"] == facts.outputs[0].zero_point
    assert report["formula"]["quantize"] == "q = round(x / S) + Z"
    md = Path(run.report_md).read_text()
    assert "q = round(x / S) + Z" in md and "model_int8.tflite" in md
    # the report's int8 number is what the TFLM runtime really gives
    name, value = _int8_metric(run)
    assert report["metric"]["name"] == name
    assert report["metric"]["tflm_int8"] == pytest.approx(value, abs=1e-6)
    assert not list(Path(run.out).parent.glob(".*.tmp")), "staging folder left behind"
    return report


def test_sine_int8_mae_close_to_float(sine_run) -> None:
    report = _check_common(sine_run, "regression")
    m = report["metric"]
    assert m["name"] == "mae"
    assert m["keras_float"] < 0.3, "sine did not learn"
    assert abs(m["tflm_int8"] - m["keras_float"]) <= 0.02


def test_digits_int8_accuracy_within_one_point(digits_run) -> None:
    report = _check_common(digits_run, "classification")
    m = report["metric"]
    assert m["name"] == "accuracy" and m["test_samples"] == 360
    assert m["keras_float"] > 0.85
    assert abs(m["tflm_int8"] - m["keras_float"]) <= 0.01


def test_dense_weights_have_one_scale(digits_run, sine_run) -> None:
    # the Arduino TFLM libraries' FULLY_CONNECTED uses one weight scale (tflm_libraries.json
    # fc_per_channel false): quantize writes Dense layers per tensor, so generate has
    # nothing to warn about for tinydeploy's own models
    from tinydeploy.tflm_overrides import per_channel_fc_layers

    for run in (digits_run, sine_run):
        facts = load(run.int8_tflite)
        assert "FULLY_CONNECTED" in facts.op_names
        assert per_channel_fc_layers(facts) == 0


def test_digits_flatten_is_one_reshape(digits_run) -> None:
    ops = load(digits_run.int8_tflite).op_names
    assert "RESHAPE" in ops
    assert not {"SHAPE", "STRIDED_SLICE", "PACK"} & set(ops), ops


def test_vibration_int8(vibration_run) -> None:
    report = _check_common(vibration_run, "classification")
    m = report["metric"]
    assert m["keras_float"] > 0.75
    assert abs(m["tflm_int8"] - m["keras_float"]) <= 0.03
    assert load(vibration_run.int8_tflite).inputs[0].shape == (1, 128, 3)


def test_fine_tune_user_model(sine_run, tmp_path: Path) -> None:
    from tinydeploy.training import train

    result = train(sine_run.model_keras, tmp_path / "ft", epochs=1, data=sine_run.data_npz)
    assert result.task == "regression" and result.epochs == 1
    assert result.model_path.is_file() and result.data_path.is_file()
    assert "test_mae" in result.metrics and "MAE" in result.summary()


def test_unknown_example(tmp_path: Path) -> None:
    from tinydeploy.training import train

    with pytest.raises(TinyDeployError) as err:
        train("nope", tmp_path / "x")
    assert err.value.code == "unknown_example" and "sine" in str(err.value)
    assert not (tmp_path / "x").exists()


def test_rejected_model_leaves_nothing(sine_run, tmp_path: Path, monkeypatch) -> None:
    import tinydeploy.guard as guard
    from tinydeploy.quantization import quantize

    def reject(model):
        raise TinyDeployError("model_rejected", path="m", problem="test", fix="none")

    monkeypatch.setattr(guard, "check", reject)
    out = tmp_path / "new" / "q"
    with pytest.raises(TinyDeployError):
        quantize(sine_run.model_keras, sine_run.data_npz, out)
    assert list(tmp_path.iterdir()) == []


def test_task_of_reference_models() -> None:
    digits = load(DATA / "digits_cnn.tflite")
    assert task_of(digits, np.array([0, 3, 9], np.float32)) == "classification"
    assert task_of(digits, np.eye(10, dtype=np.float32)[:3]) == "classification"
    assert task_of(digits, np.array([0.5, 3.2], np.float32)) == "regression"
    sigmoid = load(DATA / "sigmoid_binary.tflite")
    assert task_of(sigmoid, np.array([0, 1, 1], np.float32)) == "classification"
    sine = load(DATA / "sine_mlp.tflite")
    assert task_of(sine, np.array([0.1, -0.5], np.float32)) == "regression"
    assert task_of(sine, np.array([0, 1], np.float32)) == "regression"  # no sigmoid


def test_metric_and_representative() -> None:
    assert metric("classification", np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1])) == (
        "accuracy", 0.5)
    assert metric("regression", np.array([[1.0], [2.0]]), np.array([1.5, 2.0]))[1] == 0.25
    x = np.arange(500, dtype=np.float32).reshape(500, 1)
    d = Dataset(x, x, x[:5], x[:5], x[:5], x[:5])
    rep = representative(d, 200)
    assert rep.shape == (200, 1) and len(np.unique(rep)) == 200
    d.x_rep = x[:50] + 1000
    assert np.array_equal(representative(d, 200), d.x_rep)


def test_example_runs_as_script(tmp_path: Path, monkeypatch) -> None:
    import runpy

    from tinydeploy.resources import examples_dir

    monkeypatch.setattr("sys.argv", ["sine.py", str(tmp_path / "s"), "1"])
    runpy.run_path(str(examples_dir() / "sine.py"), run_name="__main__")
    assert (tmp_path / "s" / "model.keras").is_file()
    assert set(load_data(tmp_path / "s" / "data.npz").sample_shape) == {1}
