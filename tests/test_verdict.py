"""The verdict cannot lie: outputs compared in their own dtype (a float output 1e-4 off
FAILs), the guard in front of validate and generate, known TFLM version differences
reported as such, the host reference named and its arena following the model."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import needs_tflm
import numpy as np
import pytest

from tinydeploy import cli, hostref
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load
from tinydeploy.guard import check
from tinydeploy.hostref_native import reference_model
from tinydeploy.known_diffs import differences, explain
from tinydeploy.log import log
from tinydeploy.validation import validate
from tinydeploy.verdict import compute_metrics, judge, rule_for, units_apart

DATA = Path(__file__).parent / "data"
SINE = DATA / "sine_mlp.tflite"
SUB16 = DATA / "ext_ops" / "sub16_0.tflite"
SUB8 = DATA / "ext_ops" / "sub_bcast_0.tflite"


@pytest.fixture(scope="module")
def float_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ToyCar-like model: int8 inside, DEQUANTIZE into a float32 output."""
    from test_cruntime_ops import _append_quantize

    path = tmp_path_factory.mktemp("toycar") / "float_out.tflite"
    path.write_bytes(_append_quantize(load(SINE), 0.0, 0, out_type=0))
    assert load(path).outputs[0].dtype == "FLOAT32"
    return path


def _host(model: Path, n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(-128, 128, 256 // n, dtype=np.int8).reshape(n, 1)
    return x, reference_model(load(model)).predict(x)


# --- outputs compared in their own dtype -----------------------------------------------------
def test_float_output_off_by_1e4_fails(float_out: Path) -> None:
    facts = load(float_out)
    _, host = _host(float_out)
    device = (host + np.float32(1e-4)).astype(np.float32)
    # what the old int32 cast saw: identical, i.e. a false PASS
    assert np.array_equal(host.astype(np.int32), device.astype(np.int32))
    zeros = np.zeros(len(host), np.int64)
    m = compute_metrics(host, device, facts.outputs[0], None, zeros, zeros, 0, facts)
    assert m["samples_differing"] == len(host) and m["exact_match_rate"] == 0.0
    assert m["comparison"]["method"] == "bit pattern" and m["diff_unit"] == "ULP"
    assert m["max_abs_diff"] == pytest.approx(1e-4, rel=0.05) and m["max_abs_diff_lsb"] > 0
    verdict = judge([host], [device], facts)
    assert verdict.differing == len(host) and not verdict.explained.any()
    # a stated float tolerance accepts it, a smaller one does not
    assert judge([host], [device], facts, tolerance_float=2e-4).differing == 0
    assert judge([host], [device], facts, tolerance_float=5e-5).differing == len(host)
    # bit-exact means the bits: a one-ULP difference and -0.0 vs 0.0 differ, same NaN does not
    h = np.array([[1.0, 0.0, np.nan]], np.float32)
    d = np.array([[np.nextafter(np.float32(1), np.float32(2)), -0.0, np.nan]], np.float32)
    assert units_apart(h, d).tolist() == [[1, 1, 0]]
    from tinydeploy.report.plots import validation_plots  # plotted as floats, not truncated

    assert len(validation_plots(host, device, zeros)) == 3


def test_integer_outputs_compare_as_integers() -> None:
    out16 = load(SUB16).outputs[0]
    rule = rule_for(out16, tolerance_lsb=2)
    assert rule.method == "integer" and "as integers (|Δ| <= 2 LSB)" in rule.text()
    h = np.array([[-32768, 32767]], np.int16)
    d = np.array([[32767, -32768]], np.int16)  # no wrap-around in int16 arithmetic
    assert units_apart(h, d).tolist() == [[65535, 65535]]


def test_float_device_over_the_wire_fails(float_out: Path, tmp_path: Path) -> None:
    """A tampered (simulated) device 1e-4 off on its float output, through the run loop
    that writes samples.csv: every row differs and shows the float values untruncated."""
    from tinydeploy.device.link import Link
    from tinydeploy.device.sim import start_sim
    from tinydeploy.validation import run_samples

    facts = load(float_out)
    x, host = _host(float_out, 8)
    with start_sim(float_out, float_offset=1e-4) as sim, Link(sim.port) as link, \
            (tmp_path / "s.csv").open("w", newline="") as f:
        link.hello()
        device, *_ = run_samples(link, facts, [x], sim.port, csv.writer(f), f, [host], None)
    assert judge([host], device, facts).differing == 8
    rows = list(csv.reader((tmp_path / "s.csv").open()))
    assert all(int(r[3]) > 0 and r[4] == "0" for r in rows)
    assert np.array(rows[0][1].split(), np.float32).tolist() == host[0].ravel().tolist()


# --- the guard in front of validate and generate ----------------------------------------------
def test_validate_and_generate_refuse_what_check_refuses(float_out: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    import flatbuffers

    from tinydeploy.tflm_py import schema

    check(float_out)  # a float output out of DEQUANTIZE: a float interface, accepted
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytearray(
        float_out.read_bytes()), 0))
    sub = model.subgraphs[0]
    sub.tensors[int(sub.inputs[0])].type = schema.TensorType.FLOAT32  # into FULLY_CONNECTED
    builder = flatbuffers.Builder(4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    float_out = tmp_path / "float_in_fc.tflite"
    float_out.write_bytes(bytes(builder.Output()))
    with pytest.raises(TinyDeployError) as err:
        check(float_out)
    line = f"error: {err.value}"
    data = tmp_path / "d.npz"
    np.savez(data, x_test=np.zeros((2, 1), np.float32))
    capsys.readouterr()
    for argv in (["check", str(float_out)],
                 ["generate", str(float_out), "--runtime", "c", "--board", "native",
                  "--out", str(tmp_path / "c")],
                 ["generate", str(float_out), "--runtime", "c", "--board", "nano33ble",
                  "--out", str(tmp_path / "fw")],
                 ["validate", str(float_out), "--data", str(data), "--board", "sim",
                  "--out", str(tmp_path / "v")]):
        assert cli.main(argv) == 3, argv
        assert line in capsys.readouterr().err.replace("\n", ""), argv
    assert not any((tmp_path / d).exists() for d in ("c", "fw", "v"))


# --- known TFLM version differences ------------------------------------------------------------
@needs_tflm.mark
def test_known_differences_are_data() -> None:
    by_op = {(d["op"], d["dtype"]): d for d in differences()}
    assert by_op[("LEAKY_RELU", "INT16")]["lsb"] == by_op[("SUB", "INT16")]["lsb"] == 1
    assert all(hostref.TESTED_TFLM in d["host_versions"] for d in differences())
    facts = load(SUB16)
    out = facts.outputs[0]
    assert explain(facts, out, 1)["op"] == "SUB"
    assert explain(facts, out, 2) is None  # more than the known LSB: a device fault
    assert explain(facts, out, 1, host_version="0.dev20990101000000") is None  # other build
    assert explain(load(SUB8), load(SUB8).outputs[0], 1) is None  # int8 SUB: not known


def _sub16_data(tmp_path: Path) -> Path:
    facts = load(SUB16)
    rng = np.random.default_rng(0)
    arrays = {f"x_test_{k}": rng.integers(-3000, 3000, size=(24, *t.shape[1:]),
                                          dtype=np.int16)
              for k, t in enumerate(facts.inputs)}
    np.savez(tmp_path / "sub16.npz", **arrays)
    return tmp_path / "sub16.npz"


@needs_tflm.mark
def test_known_difference_is_a_pass_with_a_note(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from tinydeploy.device.sim import start_sim

    data = _sub16_data(tmp_path)
    with start_sim(SUB16, wrong_outputs=0.5, seed=3) as sim:
        r = validate(SUB16, data, tmp_path / "a", port=sim.port)
        strict = cli.main(["validate", str(SUB16), "--data", str(data), "--port", sim.port,
                           "--out", str(tmp_path / "b"), "--strict"])
    assert r.passed and r.differing == 0 and 0 < r.explained < 24
    assert "PASS (with a known TFLM version difference" in r.summary()
    assert "note: known TFLM version difference" in r.summary()
    doc = json.loads(r.paths["json"].read_text())
    assert doc["explained"] == r.explained and doc["known_differences"][0]["op"] == "SUB"
    assert doc["host_reference"]["version"] == hostref.tflm_version()
    assert f"host reference: tflite-micro {hostref.tflm_version()}" in r.summary()
    assert doc["metrics"]["comparison"][0]["method"] == "integer"
    assert "known TFLM version difference" in r.paths["html"].read_text()
    assert strict == 6  # --strict: the same mismatches are failures
    assert json.loads((tmp_path / "b" / "validation.json").read_text())["differing"] > 0


# --- the host reference -----------------------------------------------------------------------
@needs_tflm.mark
def test_host_reference_is_pinned_and_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    import tomllib

    deps = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert any(d.startswith(f"tflite-micro=={hostref.TESTED_TFLM};")  # where wheels exist
               for d in deps["project"]["dependencies"])
    assert hostref.reference()["version"] == hostref.tflm_version() != "unknown"
    seen: list[str] = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = lambda rec: seen.append(rec.getMessage())  # type: ignore[method-assign]
    log.addHandler(handler)
    try:
        monkeypatch.setattr(hostref, "tflm_version", lambda: "0.dev20990101000000")
        assert hostref.warn_untested() is False
    finally:
        log.removeHandler(handler)
    assert any("0.dev20990101000000" in w and hostref.TESTED_TFLM in w for w in seen)
    facts = load(SUB16)
    assert explain(facts, facts.outputs[0], 1) is None  # not the tested build: nothing known
