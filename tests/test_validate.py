"""validate: host vs device over a real pseudo-terminal (the simulated board), metrics,
hash check, fault tolerance (corruption, drops, resets, slow replies) and the reports.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from tinydeploy import cli
from tinydeploy.data import Dataset
from tinydeploy.device.sim import start_sim
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load
from tinydeploy.validation import compute_metrics, validate

DATA = Path(__file__).parent / "data"
SINE = DATA / "sine_mlp.tflite"
DIGITS = DATA / "digits_cnn.tflite"


def _split(x: np.ndarray, y: np.ndarray) -> Dataset:
    n = len(x)
    a, b = n // 2, 3 * n // 4
    return Dataset(x_train=x[:a], y_train=y[:a], x_val=x[a:b], y_val=y[a:b],
                   x_test=x[b:], y_test=y[b:])


@pytest.fixture(scope="module")
def sine_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(3)
    x = rng.uniform(0.0, 2 * math.pi, size=(400, 1)).astype(np.float32)
    return _split(x, np.sin(x).astype(np.float32)).save(
        tmp_path_factory.mktemp("sine") / "data.npz")


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    return _split(x, d.target.astype(np.float32)).save(
        tmp_path_factory.mktemp("digits") / "data.npz")


def _csv_indices(path: Path) -> list[int]:
    with path.open(newline="") as f:
        return [int(row["index"]) for row in csv.DictReader(f)]


def test_sine_on_sim_is_bit_exact(sine_npz: Path, tmp_path: Path) -> None:
    r = validate(SINE, sine_npz, tmp_path, board="sim", samples=40)
    assert r.passed and r.samples == 40 and r.differing == 0
    assert r.metrics["exact_match_rate"] == 1.0 and r.metrics["max_abs_diff_lsb"] == 0
    assert r.metrics["task"] == "regression" and r.metrics["mae_host"] < 0.2
    assert r.metrics["mae_host"] == r.metrics["mae_device"]
    assert r.metrics["cosine_similarity"] == pytest.approx(1.0)
    assert _csv_indices(r.paths["csv"]) == list(range(40))
    doc = json.loads(r.paths["json"].read_text())
    assert doc["passed"] is True and doc["metrics"]["samples"] == 40
    assert doc["device"]["model_sha256"] == load(SINE).sha256
    page = r.paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 4 and "PASS" in page  # + predicted vs true
    assert "http" not in page.split("<body>")[1]  # self-contained
    assert "100.00 %" in r.summary()


def test_digits_on_sim_is_bit_exact(digits_npz: Path, tmp_path: Path) -> None:
    r = validate(DIGITS, digits_npz, tmp_path, board="sim", samples=60)
    m = r.metrics
    assert r.passed and m["exact_match_rate"] == 1.0
    assert m["task"] == "classification" and m["top1_agreement"] == 1.0
    assert m["accuracy_host"] == m["accuracy_device"] > 0.5
    lat = m["latency_us"]
    assert 0 <= lat["min"] <= lat["median"] <= lat["max"]


def test_wrong_outputs_are_caught(digits_npz: Path, tmp_path: Path) -> None:
    with start_sim(DIGITS, wrong_outputs=0.3, seed=4) as sim:
        r = validate(DIGITS, digits_npz, tmp_path, port=sim.port, samples=40)
        sim.stop()
        wrong = sim.stats()["wrong"]
    assert not r.passed and 0 < r.differing < 40
    assert r.differing == len(wrong)  # exactly the samples the board perturbed
    assert r.metrics["max_abs_diff_lsb"] == 1
    assert f"{r.differing} samples differ" in r.summary()
    rows = list(csv.DictReader(r.paths["csv"].open(newline="")))
    assert sum(int(row["exact"]) == 0 for row in rows) == r.differing
    assert json.loads(r.paths["json"].read_text())["passed"] is False
    assert "FAIL" in r.paths["html"].read_text()


def test_cli_exits_non_zero_on_wrong_outputs(digits_npz: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "v"
    with start_sim(DIGITS, wrong_outputs=0.5, seed=1) as sim:
        code = cli.main(["validate", str(DIGITS), "--data", str(digits_npz), "--out", str(out),
                         "--port", sim.port, "--samples", "20"])
    assert code == 6
    doc = json.loads((out / "validation.json").read_text())
    assert doc["differing"] > 0
    assert f"{doc['differing']} samples differ" in capsys.readouterr().out
    assert (out / "report.html").is_file() and len(_csv_indices(out / "samples.csv")) == 20


def test_tolerance_accepts_small_differences() -> None:
    out = load(DIGITS).outputs[0]
    host = np.zeros((4, 10), np.int8)
    device = host.copy()
    device[1, 3] = 2
    device[2, 0] = -1
    zeros = np.zeros(4, np.int64)
    exact = compute_metrics(host, device, out, None, zeros, zeros, 0)
    assert exact["samples_differing"] == 2 and exact["max_abs_diff_lsb"] == 2
    assert exact["exact_match_rate"] == pytest.approx(38 / 40)
    loose = compute_metrics(host, device, out, None, zeros, zeros, 2)
    assert loose["samples_differing"] == 0 and "cycles" not in loose


def test_hash_mismatch_is_refused(sine_npz: Path, tmp_path: Path) -> None:
    with start_sim(DIGITS) as sim:
        with pytest.raises(TinyDeployError) as err:
            validate(SINE, sine_npz, tmp_path, port=sim.port, samples=5)
        code = cli.main(["validate", str(SINE), "--data", str(sine_npz), "--out",
                         str(tmp_path), "--port", sim.port])
        sim.stop()
        stats = sim.stats()
    assert err.value.code == "hash_mismatch" and code == 5
    assert load(DIGITS).sha256[:16] in str(err.value)
    assert not (tmp_path / "samples.csv").exists()  # nothing sent, nothing written
    assert stats["invocations"] == 0


@pytest.mark.parametrize("faults", [
    {"corrupt": 0.002, "seed": 2},
    {"drop": 0.002, "seed": 3},
    {"reset_after": 7},
    {"delay": 0.05, "split": True},
], ids=["corrupt", "drop", "reset", "slow"])
def test_faults_still_validate_every_sample_once(faults: dict[str, float], sine_npz: Path,
                                                  tmp_path: Path) -> None:
    n = 30 if "reset_after" in faults or "delay" in faults else 60
    with start_sim(SINE, **faults) as sim:
        r = validate(SINE, sine_npz, tmp_path, port=sim.port, samples=n)
        sim.stop()
        stats = sim.stats()
    assert r.passed, r.summary()
    assert _csv_indices(r.paths["csv"]) == list(range(n))  # each index once, in order
    assert stats["invocations"] == n  # the device ran every sample exactly once
    if "reset_after" in faults:
        assert stats["resets"] == 1 and r.device["resets"] == 1
    if "corrupt" in faults or "drop" in faults:
        assert stats["errors_sent"] + stats["cached_replies"] > 0  # faults did happen


def test_bad_arguments(sine_npz: Path, tmp_path: Path) -> None:
    with pytest.raises(TinyDeployError) as err:
        validate(SINE, sine_npz, tmp_path)
    assert err.value.code == "bad_argument"
    with pytest.raises(TinyDeployError) as err:
        validate(SINE, sine_npz, tmp_path, board="sim", samples=0)
    assert err.value.code == "bad_argument"
    with pytest.raises(TinyDeployError) as err:
        validate(DIGITS, sine_npz, tmp_path, board="sim")
    assert err.value.code == "bad_data"


class _DyingLink:
    """A link that answers like the host and then fails at sample ``die_at``."""

    def __init__(self, facts: object, exc: BaseException, die_at: int) -> None:
        from tinydeploy.device.protocol import DeviceInfo, TensorInfo
        from tinydeploy.hostref_native import reference_model

        self.facts, self.exc, self.die_at, self.calls = facts, exc, die_at, 0
        self.csv_path: Path | None = None
        self.host = reference_model(facts)  # type: ignore[arg-type]
        t = [TensorInfo(x.dtype, x.shape, x.scale, x.zero_point)
             for x in (facts.inputs[0], facts.outputs[0])]  # type: ignore[attr-defined]
        self.info = DeviceInfo(1, "fake", "fake", "tflm", facts.sha256,  # type: ignore[attr-defined]
                               (t[0],), (t[1],), 4096, 1000, 0)

    def __enter__(self) -> _DyingLink:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def hello(self) -> object:
        return self.info

    def infer(self, data: bytes, reset: bool = True) -> object:
        from tinydeploy.device.protocol import InferReply

        if self.csv_path is not None:  # every confirmed row is on disk before the next send
            assert len(_csv_indices(self.csv_path)) == self.calls
        if self.calls == self.die_at:
            raise self.exc
        self.calls += 1
        x = np.frombuffer(data, np.int8).reshape(self.info.input.shape)
        return InferReply(self.host.predict_one(x).astype(np.int8).tobytes(), 10, 0)


@pytest.mark.parametrize("exc", [KeyboardInterrupt(),
                                 TinyDeployError("device_timeout", port="p", attempts=4)],
                         ids=["ctrl-c", "disconnect"])
def test_confirmed_samples_survive_an_abort(exc: BaseException, sine_npz: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    v = importlib.import_module("tinydeploy.validation")  # the module, not the function
    link = _DyingLink(load(SINE), exc, die_at=6)
    link.csv_path = tmp_path / "samples.csv"
    monkeypatch.setattr(v, "_open_link", lambda port, trace: link)
    with pytest.raises(type(exc)):
        validate(SINE, sine_npz, tmp_path, port="/dev/unused", samples=20)
    assert _csv_indices(tmp_path / "samples.csv") == list(range(6))


@pytest.mark.slow
@pytest.mark.parametrize("board", ["sim", "native"])
@pytest.mark.parametrize("example", ["sine", "digits", "vibration"])
def test_trained_examples_are_bit_exact(example: str, board: str,
                                        request: pytest.FixtureRequest, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = request.getfixturevalue(f"{example}_run")
    samples = "30" if board == "sim" else "all"
    args = ["validate", str(run.int8_tflite), "--data", str(run.data_npz),
            "--board", board, "--out", str(tmp_path)]
    if samples != "all":
        args += ["--samples", samples]
    code = cli.main(args)
    assert code == 0
    doc = json.loads((tmp_path / "validation.json").read_text())
    assert doc["passed"] and doc["metrics"]["exact_match_rate"] == 1.0
    assert doc["metrics"]["task"] == run.quant.task
    assert doc["device"]["runtime"] == ("c" if board == "native" else "sim")
    n = int(samples) if samples != "all" else len(np.load(run.data_npz)["x_test"])
    assert f"PASS: {n}/{n}" in capsys.readouterr().out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_validates_with_0_4_percent_corruption_both_ways(seed: int, sine_npz: Path,
                                                         tmp_path: Path) -> None:
    """No retry loop around HELLO in validate: the link's own retries carry the handshake
    and every sample through damaged frames (damage does not use up its retries)."""
    with start_sim(SINE, corrupt=0.004, seed=seed) as sim:
        r = validate(SINE, sine_npz, tmp_path, port=sim.port, samples=25)
        sim.stop()
        stats = sim.stats()
    assert r.passed, r.summary()
    assert _csv_indices(r.paths["csv"]) == list(range(25))
    assert stats["invocations"] == 25


def test_tolerance_lsb_over_the_wire(digits_npz: Path, tmp_path: Path) -> None:
    with start_sim(DIGITS, wrong_outputs=0.5, seed=2) as sim:
        r = validate(DIGITS, digits_npz, tmp_path, port=sim.port, samples=20, tolerance_lsb=1)
    assert r.passed and r.differing == 0
    assert r.metrics["exact_match_rate"] < 1.0 and r.metrics["max_abs_diff_lsb"] == 1
    assert "|Δ| <= 1 LSB" in r.summary()


def test_device_tensor_mismatch_is_refused() -> None:
    from tinydeploy.device.protocol import DeviceInfo, TensorInfo
    from tinydeploy.validation import check_device

    facts = load(SINE)
    t_in, t_out = facts.inputs[0], facts.outputs[0]
    good = TensorInfo("INT8", t_in.shape, t_in.scale, t_in.zero_point)
    out = TensorInfo("INT8", t_out.shape, t_out.scale, t_out.zero_point)
    check_device(DeviceInfo(1, "f", "b", "c", facts.sha256, (good,), (out,), 1, 1, 0), facts, "p")
    wide = TensorInfo("INT8", (1, 2), t_in.scale, t_in.zero_point)
    with pytest.raises(TinyDeployError) as err:
        check_device(DeviceInfo(1, "f", "b", "c", facts.sha256, (wide,), (out,), 1, 1, 0),
                     facts, "p")
    assert err.value.code == "protocol_error" and "[1, 2]" in str(err.value)
    i16 = TensorInfo("INT16", t_out.shape, t_out.scale, t_out.zero_point)
    with pytest.raises(TinyDeployError, match="INT16"):
        check_device(DeviceInfo(1, "f", "b", "c", facts.sha256, (good,), (i16,), 1, 1, 0),
                     facts, "p")


def test_more_samples_than_x_test_warns(sine_npz: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import logging

    v = importlib.import_module("tinydeploy.validation")
    link = _DyingLink(load(SINE), KeyboardInterrupt(), die_at=10**6)
    monkeypatch.setattr(v, "_open_link", lambda port, trace: link)
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    v.log.addHandler(handler)
    try:
        r = validate(SINE, sine_npz, tmp_path, port="/dev/unused", samples=10**5)
    finally:
        v.log.removeHandler(handler)
    have = len(np.load(sine_npz)["x_test"])
    assert r.samples == have and r.passed
    assert any(f"--samples {10**5} but x_test has {have}" in m for m in records), records


def test_report_tables_keep_every_digit_of_large_numbers() -> None:
    from tinydeploy.report.page import dict_table

    page = dict_table({"median": 1410080.0, "mean": 1410061.889, "rate": 0.9388888, "n": 7})
    assert "1\u202f410\u202f080<" in page and "1\u202f410\u202f061.9<" in page
    assert "0.938889<" in page
    assert "e+06" not in page


def test_no_device_leaves_no_output_folder(sine_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs" / "v"
    with pytest.raises(TinyDeployError) as err:
        validate(SINE, sine_npz, out, port=str(tmp_path / "no-such-tty"))
    assert err.value.code == "port_error"
    assert not (tmp_path / "runs").exists()


def test_out_below_a_file_is_one_error(sine_npz: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with start_sim(SINE) as sim:
        code = cli.main(["validate", str(SINE), "--data", str(sine_npz), "--out",
                         str(tmp_path / "afile" / "v"), "--port", sim.port])
    assert code == 2
