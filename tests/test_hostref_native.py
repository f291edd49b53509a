"""The host reference where tflite-micro is missing (tinydeploy.hostref_native).

``$TINYDEPLOY_HIDE_TFLITE_MICRO`` makes tinydeploy behave as on a machine without the
tflite-micro wheel (macOS, Windows, Linux aarch64): validation runs against the C runtime
built for the host, or the TFLM firmware built for native from a TFLM tree, and the report
names which; every stage that used the TFLM Python runtime works or fails with one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinydeploy import cli, hostref, tflm_py
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load
from tinydeploy.hostref_native import (
    C_KIND,
    CRuntimeReference,
    FirmwareReference,
    reference_model,
)
from tinydeploy.validation import validate

DATA = Path(__file__).parent / "data"
SINE = DATA / "hello_world_int8.tflite"  # TFLM's hello_world: the sine model
LSTM = DATA / "trained_lstm_int8.tflite"  # stateful
TFLM_ONLY = DATA / "tflm_only" / "reduce_max_int8.tflite"  # REDUCE_MAX: no C kernel
ROOT = Path(__file__).parents[1]


@pytest.fixture
def hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """As where no tflite-micro wheel exists (this process and its children)."""
    monkeypatch.setenv(tflm_py.HIDE_ENV, "1")
    monkeypatch.delenv("TINYDEPLOY_TFLM_SRC", raising=False)


def _data(tmp_path: Path, model: Path, n: int = 16, seed: int = 0) -> Path:
    facts = load(model)
    t = facts.inputs[0]
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (n, *t.sample_shape)).astype(t.numpy_dtype)
    path = tmp_path / "data.npz"
    np.savez(path, x_test=x)
    return path


def test_hidden_tflite_micro_is_not_importable_and_models_still_load(tmp_path: Path) -> None:
    code = ("import sys, tinydeploy.facts as f\n"
            "from tinydeploy import hostref, tflm_py\n"
            "try:\n    import tflite_micro\n    print('imported')\n"
            "except ImportError:\n    print('hidden')\n"
            "print(f.schema.__name__, tflm_py.available(), hostref.tflm_version())\n"
            "print(f.load(sys.argv[1]).op_names)\n")
    env = {**os.environ, tflm_py.HIDE_ENV: "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code, str(SINE)], capture_output=True,
                         text=True, env=env, timeout=120, check=True).stdout.split("\n")
    assert out[0] == "hidden"
    assert out[1] == "tinydeploy._tflite_schema False not installed"  # TensorFlow's schema
    assert out[2] == str(load(SINE).op_names)


@pytest.mark.needs_tflm
@pytest.mark.parametrize("name", ["hello_world_int8", "digits_cnn", "residual_cnn"])
def test_c_stand_in_equals_the_tflm_runtime(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    facts = load(DATA / f"{name}.tflite")
    x = np.load(DATA / f"{name}.inputs.npy")
    want = hostref.HostModel(facts).predict_all([x])
    monkeypatch.setenv(tflm_py.HIDE_ENV, "1")
    ref = reference_model(facts)
    assert isinstance(ref, CRuntimeReference) and ref.kind == C_KIND
    got = ref.predict_all([x])
    ref.close()
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(g, w)


def test_stateful_stand_in_keeps_state_across_runs(hidden: None) -> None:
    """The LSTM's outputs as one sequence, measured on an emulated Cortex-M4."""
    x = np.load(DATA / "trained_lstm_int8.inputs.npy")
    want = np.load(DATA / "trained_lstm_int8.outputs_cm4_stateful.npy")
    ref = reference_model(load(LSTM))
    got = np.stack([ref.run([s], reset=(i == 0))[0] for i, s in enumerate(x)])
    np.testing.assert_array_equal(got.reshape(want.shape), want)
    np.testing.assert_array_equal(ref.predict_all([x], stateful=True)[0].reshape(want.shape),
                                  want)
    assert not np.array_equal(ref.predict(x).reshape(want.shape), want)  # reset each: differs
    ref.close()


def test_validate_on_native_against_the_c_stand_in(hidden: None, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    with pytest.raises(TinyDeployError) as err:
        hostref.HostModel(load(SINE))
    assert err.value.code == "tool_missing" and "tflite-micro" in str(err.value)
    out = tmp_path / "v"
    rc = cli.main(["validate", str(SINE), "--data", str(_data(tmp_path, SINE)), "--board",
                   "native", "--out", str(out), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["passed"] and doc["samples"] == 16
    ref = doc["host_reference"]
    assert ref["kind"] == "c-runtime" and ref["package"] is None
    assert "C runtime built for this host" in ref["name"]
    assert doc["report"]["run"]["host_reference"] == ref["name"]
    assert ref["name"] in (out / "report.html").read_text()
    assert json.loads((out / "validation.json").read_text())["host_reference"] == ref


def test_sim_board_and_summary_name_the_stand_in(hidden: None, tmp_path: Path) -> None:
    data = tmp_path / "lstm.npz"
    np.savez(data, x_test=np.load(DATA / "trained_lstm_int8.inputs.npy")[:6])
    r = validate(LSTM, data, tmp_path / "s", board="sim", stateful=True)
    assert r.passed and r.samples == 6
    assert "host reference: C runtime built for this host" in r.summary()


def test_tflm_only_model_without_a_tree_is_one_line(hidden: None, tmp_path: Path,
                                                    capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(TinyDeployError) as err:
        reference_model(load(TFLM_ONLY))
    assert err.value.code == "tool_missing" and err.value.exit_code == 7
    out = tmp_path / "v"
    rc = cli.main(["validate", str(TFLM_ONLY), "--data", str(_data(tmp_path, TFLM_ONLY)),
                   "--board", "sim", "--out", str(out)])
    lines = [ln for ln in capfd.readouterr().err.splitlines() if ln.startswith("error")]
    assert rc == 7 and len(lines) == 1, lines
    assert "REDUCE_MAX" in lines[0] and "--tflm-src" in lines[0]
    assert "Traceback" not in lines[0] and not out.exists()


def test_tflm_only_model_routes_to_the_firmware_with_a_tree(
        hidden: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The routing: a tree given, a model the C runtime refuses gets the firmware reference
    (not built here: the next test runs it where a tree exists)."""
    from types import SimpleNamespace

    from tinydeploy.device import tflm_tree

    fake = SimpleNamespace(root=Path("/some/tflm"))
    monkeypatch.setattr(tflm_tree, "find_tflm_tree", lambda path=None: fake)
    monkeypatch.setattr(tflm_tree, "TflmTree", type("T", (), {}))
    ref = reference_model(load(TFLM_ONLY), "/some/tflm")
    assert isinstance(ref, FirmwareReference) and ref.tree is fake
    assert ref.describe()["kind"] == "tflm-firmware" and "/some/tflm" in ref.label
    ref.close()


TREE = os.environ.get("TINYDEPLOY_TFLM_SRC", "")


@pytest.mark.slow
@pytest.mark.skipif(not TREE, reason="set TINYDEPLOY_TFLM_SRC to a TFLM tree (Arduino library "
                                     "or tflite-micro checkout) to build the TFLM firmware")
def test_firmware_stand_in_runs_the_tflm_only_model(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    facts = load(TFLM_ONLY)
    x = np.random.default_rng(2).integers(-128, 128, (8, 8)).astype(np.int8)
    want = hostref.HostModel(facts).predict(x) if tflm_py.available() else None
    monkeypatch.setenv(tflm_py.HIDE_ENV, "1")
    ref = reference_model(facts, TREE)
    assert isinstance(ref, FirmwareReference) and ref.label.startswith("TFLM firmware")
    got = ref.predict(x)
    ref.close()
    assert got.shape == (8, 1) and len(np.unique(got)) > 1
    if want is not None:  # the TFLM kernels of the tree agree with the Python runtime
        np.testing.assert_array_equal(got, want)


def test_check_arena_and_quantize_scoring_without_tflite_micro(
        hidden: None, capfd: pytest.CaptureFixture[str]) -> None:
    from tinydeploy.quantization import evaluate_int8

    assert cli.main(["check", str(SINE)]) == 0
    assert cli.main(["arena", str(SINE)]) == 0  # cortex-m: the pure replay
    assert "tensor arena for cortex-m" in capfd.readouterr().out
    assert cli.main(["arena", str(SINE), "--target", "host64"]) == 7
    err = [ln for ln in capfd.readouterr().err.splitlines() if ln.startswith("error")]
    assert len(err) == 1 and "tflite-micro" in err[0] and "--target cortex-m" in err[0]
    facts = load(SINE)
    y = evaluate_int8(facts, np.linspace(0, 6, 5, dtype=np.float32)[:, None])
    assert y.shape == (5, 1) and np.all(np.abs(y) <= 1.2)


def test_tensorflow_drift_is_named() -> None:
    import logging

    import tomllib

    from tinydeploy.log import log

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = f"tensorflow>={hostref.TESTED_TENSORFLOW},<2.22"
    assert pinned in deps
    assert hostref.warn_untested_tensorflow(hostref.TESTED_TENSORFLOW + ".7") is True
    seen: list[str] = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = lambda rec: seen.append(rec.getMessage())  # type: ignore[method-assign]
    log.addHandler(handler)
    try:
        assert hostref.warn_untested_tensorflow("2.99.1") is False
    finally:
        log.removeHandler(handler)
    assert any("tensorflow 2.99.1" in w and pinned in w for w in seen), seen
