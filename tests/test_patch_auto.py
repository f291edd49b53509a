"""``--patch auto | off | FIRST:LAST:BANDS``: the patch-based stage as an argument.

* The choice travels as an argument (CLI -> render / validation / device builds ->
  ``codegen.build``), no environment variable: a forced stage changes the generated code,
  ``off`` reproduces the plain plan, the native build's cache key follows the choice, and
  a malformed value or a TFLM build is one error line.
* ``auto`` (the default): person_detect gets the stage the planner finds (it lowers the
  arena by >= 5 % for <= 1 % more multiply-accumulates), bit-exact with the stored
  Cortex-M4 reference outputs on the native build and on qemu-cm4; the caps hold (no
  stage when they cannot be met) and plan_stage's refusals only drop candidates.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tinydeploy.cli import main
from tinydeploy.cruntime import codegen, memplan, patch_auto
from tinydeploy.cruntime.graph import read_graph
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load
from tinydeploy.layers import op_macs

DATA = Path(__file__).parent / "data"
PERSON = DATA / "person_detect.tflite"
DIGITS = DATA / "digits_cnn.tflite"
HAS_QEMU = all(shutil.which(t) for t in ("arm-none-eabi-gcc", "qemu-system-arm"))
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")


@pytest.fixture(scope="module")
def person() -> dict[str, object]:
    """person_detect built with ``off`` and with ``auto`` (shared: ~1.5 s)."""
    facts = load(PERSON)
    off_texts, off = codegen.build(facts, patch="off")
    auto_texts, auto = codegen.build(facts)  # the default: auto
    return {"facts": facts, "off": off, "off_texts": off_texts, "auto": auto,
            "auto_texts": auto_texts}


def test_choice_parsed_and_bad_values_refused_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parse = patch_auto.parse_choice
    assert parse(None) == parse("auto") == parse(" AUTO ") == "auto" and parse("off") == "off"
    assert parse("0:3:4") == parse((0, 3, 4)) == (0, 3, 4)
    assert patch_auto.choice_key((0, 3, 4)) == "0:3:4" != patch_auto.choice_key("off")
    for bad in ("0-3", "1:2", "a:b:c", "sometimes", (1, 2)):
        with pytest.raises(TinyDeployError, match="not auto, off or FIRST_OP:LAST_OP:BANDS"):
            parse(bad)  # type: ignore[arg-type]
    for argv in (["--runtime", "c", "--board", "native", "--patch", "sometimes"],
                 ["--board", "nano33ble", "--patch", "auto"]):  # TFLM firmware: refused
        capsys.readouterr()
        assert main(["generate", str(DIGITS), *argv, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and len(err.splitlines()) == 1, err
        assert "--patch" in err and not (tmp_path / "x").exists()
    from tinydeploy import render

    with pytest.raises(TinyDeployError, match="builds the TFLM firmware"):
        render.generate(DIGITS, tmp_path / "y", boards=["nano33ble"], patch="off")
    with pytest.raises(TinyDeployError, match="op 3 RESHAPE cannot run in bands"):
        codegen.build(load(DIGITS), patch=(0, 3, 2))


def test_forced_stage_reaches_the_code_and_off_is_the_plain_plan(tmp_path: Path) -> None:
    out = {}
    for how in ("off", "0:2:3", "auto"):
        assert main(["generate", str(DIGITS), "--runtime", "c", "--board", "native",
                     "--patch", how, "--out", str(tmp_path / how.replace(":", "_"))]) == 0
        folder = tmp_path / how.replace(":", "_")
        out[how] = ((folder / "td_model.c").read_text(),
                    json.loads((folder / "memory.json").read_text()))
    assert "row bands" in out["0:2:3"][0] and "row bands" not in out["off"][0]
    assert out["0:2:3"][1]["patch"]["chosen"] == "forced" and "patch" not in out["off"][1]
    # digits_cnn has no stage worth it: auto generates exactly what off does
    assert out["auto"][0] == out["off"][0] and "patch" not in out["auto"][1]


def test_off_reproduces_the_plan_without_a_stage(person: dict) -> None:
    off = person["off"]
    assert off.plan.size == 37263 and "patch" not in off.memory()  # the plan before --patch
    assert "row bands" not in person["off_texts"]["td_model.c"]


@needs_gcc
def test_auto_picks_a_stage_that_lowers_the_ram_bit_exact(person: dict, tmp_path: Path) -> None:
    off, auto = person["off"], person["auto"]
    rep = auto.memory()["patch"]
    assert rep["chosen"] == "auto" and rep["saved_bytes"] == off.plan.size - auto.plan.size
    assert rep["saved_ratio"] >= patch_auto.MIN_SAVED_RATIO
    assert rep["saved_bytes"] >= patch_auto.MIN_SAVED_BYTES
    assert rep["extra_macs_ratio"] <= patch_auto.MAX_EXTRA_MACS  # halos carried: none
    assert rep["candidates"] > 1 and rep["recompute_macs_ratio"] <= 1.0
    assert rep["carried_bytes"] > 0
    assert auto.plan.size < 0.9 * off.plan.size
    first, last = rep["ops"]
    assert f"ops {first}..{last} in {rep['bands']} row bands" in person["auto_texts"]["td_model.c"]
    res = codegen.generate_c(person["facts"], tmp_path / "c", tflm_arena=False)  # default
    assert json.loads((res.out_dir / "memory.json").read_text())["patch"] == rep
    from test_cruntime_memory import person_detect_bit_exact

    person_detect_bit_exact(res.out_dir, tmp_path / "q", "auto", "row bands")


def _decide(facts: object) -> patch_auto.Decision:
    g = read_graph(facts)  # type: ignore[arg-type]
    return patch_auto.choose(g, "auto", op_macs(facts), memplan.Plans(g, False))


def test_auto_keeps_its_caps(person: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """No stage when every candidate recomputes too much or saves too little; plan_stage's
    refusals drop candidates (any range it accepts may be chosen, chain or not)."""
    facts = person["facts"]
    monkeypatch.setattr(patch_auto, "MAX_EXTRA_MACS", -0.001)  # (carried halos cost 0)
    assert _decide(facts).stage is None
    monkeypatch.setattr(patch_auto, "MAX_EXTRA_MACS", 0.01)
    monkeypatch.setattr(patch_auto, "MIN_SAVED_RATIO", 0.5)
    assert _decide(facts).stage is None
    monkeypatch.setattr(patch_auto, "MIN_SAVED_RATIO", 0.05)
    real, calls = patch_auto.plan_stage, []

    def only_from_op_2(g: object, first: int, last: int, bands: int) -> object:
        calls.append((first, last, bands))
        if first != 2:
            raise TinyDeployError("bad_argument", problem="refused here", fix="-")
        return real(g, first, last, bands)  # type: ignore[arg-type]

    monkeypatch.setattr(patch_auto, "plan_stage", only_from_op_2)
    d = _decide(facts)
    assert d.stage is not None and d.stage.first == 2 and d.report["chosen"] == "auto"
    n_ops = len(read_graph(facts).ops)
    assert 0 < len(calls) <= (patch_auto.STARTS + 2) * (patch_auto.ENDS + 1) * len(
        patch_auto.BANDS) < n_ops * n_ops  # bounded, not every range


@needs_gcc
def test_native_build_cache_follows_the_choice(tmp_path: Path) -> None:
    from tinydeploy.device.native import build_native

    work = tmp_path / "n"
    stamps = []
    for how in ("off", (0, 2, 3), (0, 2, 3)):
        binary = build_native(DIGITS, work, patch=how)
        stamps.append((json.loads((work / "native.json").read_text())["fingerprint"],
                       binary.stat().st_mtime_ns))
        banded = "row bands" in (work / "model" / "td_model.c").read_text()
        assert banded == (how != "off")
    assert stamps[0][0] != stamps[1][0] and stamps[1] == stamps[2]  # rebuilt, then reused
