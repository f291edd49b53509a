"""validate's data cases on the simulated board: x_test only, already-quantized int8/int16
inputs sent as is, the saturation warning, several inputs (x_test_0, x_test_1), stateful
sequences (LSTM) - each checked against the Cortex-M4 ground truth where there is one."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from pathlib import Path

import needs_tflm
import numpy as np
import pytest

from tinydeploy import cli
from tinydeploy.errors import TinyDeployError
from tinydeploy.log import log
from tinydeploy.validation import validate

DATA = Path(__file__).parent / "data"


@contextlib.contextmanager
def _warnings() -> Iterator[list[str]]:
    records: list[str] = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = lambda r: records.append(r.getMessage())  # type: ignore[method-assign]
    log.addHandler(handler)
    try:
        yield records
    finally:
        log.removeHandler(handler)


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def sine_sim() -> Iterator[str]:
    """One simulated board for the sine tests (its port)."""
    from tinydeploy.device.sim import start_sim

    with start_sim(DATA / "sine_mlp.tflite") as sim:
        yield sim.port


def test_x_test_only_is_enough(tmp_path: Path, sine_sim: str) -> None:
    x = np.linspace(0.1, 6.0, 12, dtype=np.float32)[:, None]
    data = _npz(tmp_path / "d.npz", x_test=x)  # no labels, no train/val splits
    with _warnings() as warned:
        r = validate(DATA / "sine_mlp.tflite", data, tmp_path / "out", port=sine_sim)
    assert r.passed and r.samples == 12 and "task" not in r.metrics
    assert not [w for w in warned if "saturate" in w]


def test_quantized_int8_x_test_is_sent_as_is(tmp_path: Path) -> None:
    """The reference inputs are int8 already: sent unchanged, the outputs equal the
    Cortex-M4 ground truth (re-quantizing them as floats would change every sample)."""
    x = np.load(DATA / "digits_cnn.inputs.npy")
    assert x.dtype == np.int8
    data = _npz(tmp_path / "d.npz", x_test=x)
    r = validate(DATA / "digits_cnn.tflite", data, tmp_path / "out", board="sim")
    assert r.passed
    cm4 = np.load(DATA / "digits_cnn.outputs_cm4.npy")
    assert r.device_out.tobytes() == cm4.tobytes()


def test_saturating_inputs_warn_once(tmp_path: Path, sine_sim: str) -> None:
    x = np.linspace(0.1, 6.0, 20, dtype=np.float32)[:, None]
    x[:5] *= 100.0  # 25 % of the values far outside the input's range
    data = _npz(tmp_path / "d.npz", x_test=x, y_test=np.sin(x))
    with _warnings() as warned:
        r = validate(DATA / "sine_mlp.tflite", data, tmp_path / "out", port=sine_sim)
    assert r.passed  # the device still matches the host on the clipped values
    hits = [w for w in warned if "saturate" in w]
    assert len(hits) == 1 and "x_test 25.0 %" in hits[0]


def test_two_inputs_from_x_test_0_and_x_test_1(tmp_path: Path) -> None:
    x0, x1 = (np.load(DATA / f"simple_add_model.inputs_{k}.npy")[:4] for k in (0, 1))
    data = _npz(tmp_path / "d.npz", x_test_0=x0, x_test_1=x1)  # 2 x 16 kB in, 16 kB out
    r = validate(DATA / "simple_add_model.tflite", data, tmp_path / "out", board="sim")
    assert r.passed and r.samples == len(x0)
    cm4 = np.load(DATA / "simple_add_model.outputs_cm4.npy")[:4]
    assert r.device_out.tobytes() == cm4.tobytes()
    with pytest.raises(TinyDeployError) as err:
        validate(DATA / "simple_add_model.tflite", _npz(tmp_path / "e.npz", x_test_0=x0),
                 tmp_path / "out2", board="sim")
    assert err.value.code == "bad_data" and "x_test_1" in str(err.value)
    assert not (tmp_path / "out2").exists()


def test_int16_model_with_int16_x_test(tmp_path: Path) -> None:
    x = np.load(DATA / "seanet_conv0.inputs.npy")[:6]
    assert x.dtype == np.int16
    data = _npz(tmp_path / "d.npz", x_test=x)
    r = validate(DATA / "seanet_conv0.tflite", data, tmp_path / "out", board="sim")
    assert r.passed
    cm4 = np.load(DATA / "seanet_conv0.outputs_cm4.npy")[:6]
    assert r.device_out.tobytes() == cm4.tobytes()


@pytest.mark.parametrize("stateful", [False, True], ids=["reset", "stateful"])
def test_lstm_with_and_without_state(stateful: bool, tmp_path: Path) -> None:
    """Each sample from a fresh state (default) matches outputs_cm4; --stateful (one
    sequence) matches outputs_cm4_stateful; the two differ."""
    x = np.load(DATA / "trained_lstm_int8.inputs.npy")[:8]
    data = _npz(tmp_path / "d.npz", x_test=x)
    args = ["validate", str(DATA / "trained_lstm_int8.tflite"), "--data", str(data),
            "--board", "sim", "--out", str(tmp_path / "out")]
    assert cli.main(args + (["--stateful"] if stateful else [])) == 0
    import json

    doc = json.loads((tmp_path / "out" / "validation.json").read_text())
    assert doc["passed"] and doc["metrics"].get("stateful", False) == stateful
    rows = (tmp_path / "out" / "samples.csv").read_text().splitlines()[1:]
    got = np.array([[int(v) for v in row.split(",")[2].split()] for row in rows], np.int8)
    suffix = "_stateful" if stateful else ""
    want = np.load(DATA / f"trained_lstm_int8.outputs_cm4{suffix}.npy")[:8]
    np.testing.assert_array_equal(got, want.reshape(8, -1))
    other = np.load(DATA / f"trained_lstm_int8.outputs_cm4{'' if stateful else '_stateful'}.npy")
    assert not np.array_equal(got, other[:8].reshape(8, -1))


def test_sine_float_data_still_quantized(tmp_path: Path) -> None:
    """Float data is quantized with the input's scale (x / S + Z), as before."""
    from tinydeploy.facts import load
    from tinydeploy.hostref import quantize_input, saturation

    t = load(DATA / "sine_mlp.tflite").inputs[0]
    x = np.array([[0.0], [math.pi], [1e6]], np.float32)
    q = quantize_input(x, t)
    assert q.dtype == np.int8 and q[2, 0] == 127
    assert saturation(x, t) == pytest.approx(1 / 3)
    assert saturation(q, t) == 0.0 and quantize_input(q, t) is not None
    np.testing.assert_array_equal(quantize_input(q, t), q)


def test_device_with_another_tensor_count_is_refused() -> None:
    from tinydeploy.device.protocol import DeviceInfo, TensorInfo
    from tinydeploy.facts import load
    from tinydeploy.validation import check_device

    facts = load(DATA / "simple_add_model.tflite")
    ts = [TensorInfo(t.dtype, t.shape, t.scale or 0.0, t.zero_point or 0)
          for t in (*facts.inputs, *facts.outputs)]
    check_device(DeviceInfo(2, "f", "b", "c", facts.sha256, tuple(ts[:2]), (ts[2],), 1, 1, 0),
                 facts, "p")
    with pytest.raises(TinyDeployError, match="has 1 inputs, the model 2"):
        check_device(DeviceInfo(2, "f", "b", "c", facts.sha256, (ts[0],), (ts[2],), 1, 1, 0),
                     facts, "p")


@needs_tflm.mark
def test_host_reference_resets_only_stateful_models() -> None:
    from tinydeploy.facts import load
    from tinydeploy.hostref import HostModel, has_state

    assert has_state(load(DATA / "trained_lstm_int8.tflite"))
    assert not has_state(load(DATA / "digits_cnn.tflite"))
    lstm = HostModel(load(DATA / "trained_lstm_int8.tflite"))
    x = np.load(DATA / "trained_lstm_int8.inputs.npy")
    fresh = [lstm.predict_one(s) for s in x]
    again = [lstm.predict_one(s) for s in x]  # each from a fresh state: the same
    np.testing.assert_array_equal(fresh, again)
    seq = lstm.predict(x, stateful=True)
    np.testing.assert_array_equal(seq[0], fresh[0])
    assert not np.array_equal(seq, np.stack(fresh))
    want = np.load(DATA / "trained_lstm_int8.outputs_cm4_stateful.npy")
    np.testing.assert_array_equal(seq.reshape(want.shape), want)


def test_load_split_checks(tmp_path: Path) -> None:
    from tinydeploy.data import load_split

    x = np.zeros((4, 3), np.float32)
    xs, y = load_split(_npz(tmp_path / "a.npz", x_test_0=x), "test", 1)  # _0 for one input
    assert len(xs) == 1 and y is None
    cases = {"b": dict(x_test=x, y_test=np.zeros(3)),  # 4 samples, 3 labels
             "c": dict(x_test=np.full((2, 3), np.nan, np.float32)),
             "d": dict(x_test=np.zeros((0, 3), np.float32)),
             "e": dict(x_train=x)}
    problems = {"b": "sample counts differ", "c": "NaN", "d": "empty", "e": "missing key x_test"}
    for name, arrays in cases.items():
        with pytest.raises(TinyDeployError) as err:
            load_split(_npz(tmp_path / f"{name}.npz", **arrays), "test", 1)
        assert err.value.code == "bad_data" and problems[name] in str(err.value), name


def test_an_npy_of_samples_is_enough(tmp_path: Path) -> None:
    """The shared reference models come with NAME.inputs.npy: a single-input model takes
    the array itself as x_test (int8 sent as is: the Cortex-M4 ground truth); a
    several-input model or a broken file is refused in one line."""
    from tinydeploy.data import load_split

    r = validate(DATA / "digits_cnn.tflite", DATA / "digits_cnn.inputs.npy", tmp_path / "out",
                 board="sim")
    assert r.passed and r.samples == len(np.load(DATA / "digits_cnn.inputs.npy"))
    assert r.device_out.tobytes() == np.load(DATA / "digits_cnn.outputs_cm4.npy").tobytes()
    with pytest.raises(TinyDeployError, match="one .npy array for a model of 2 inputs"):
        load_split(DATA / "seanet_add0.inputs_0.npy", "test", 2)
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(TinyDeployError, match="not a readable .npy"):
        load_split(tmp_path / "bad.npy", "test", 1)
    np.save(tmp_path / "nan.npy", np.full((2, 3), np.nan, np.float32))
    with pytest.raises(TinyDeployError, match="NaN"):
        load_split(tmp_path / "nan.npy", "test", 1)


def test_device_with_other_quantization_is_refused() -> None:
    from tinydeploy.device.protocol import DeviceInfo, TensorInfo
    from tinydeploy.facts import load
    from tinydeploy.validation import check_device

    facts = load(DATA / "sine_mlp.tflite")
    t_in, t_out = facts.inputs[0], facts.outputs[0]
    good = TensorInfo("INT8", t_in.shape, t_in.scale, t_in.zero_point)
    out = TensorInfo("INT8", t_out.shape, t_out.scale, t_out.zero_point)
    shifted = TensorInfo("INT8", t_out.shape, t_out.scale, t_out.zero_point + 1)
    check_device(DeviceInfo(2, "f", "b", "c", facts.sha256, (good,), (out,), 1, 1, 0),
                 facts, "p")
    with pytest.raises(TinyDeployError, match="zero point"):
        check_device(DeviceInfo(2, "f", "b", "c", facts.sha256, (good,), (shifted,), 1, 1, 0),
                     facts, "p")
