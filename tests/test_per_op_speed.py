"""The pure-Python parts of ``benchmarks/per_op_speed.py`` (no TFLM tree, no QEMU): the
parser of the TFLM profiling image's UART text, its output hash, the per-op rows and the
(op, dtype) summary."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("per_op_speed",
                                                  ROOT / "benchmarks" / "per_op_speed.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["per_op_speed"] = mod
    spec.loader.exec_module(mod)
    return mod


TEXT = ("boot noise\nN CONV_2D SOFTMAX\nP 10 3\nT 14\nO 123\nP 12 3\nT 16\nO 123\nDONE\n")


def test_parse_reads_tags_ticks_totals_hashes(bench):
    run = bench.parse_tflm_output(TEXT)
    assert run.tags == ["CONV_2D", "SOFTMAX"]
    assert run.ticks.tolist() == [[10, 3], [12, 3]]
    assert run.totals == [14, 16] and run.hashes == [123, 123]


@pytest.mark.parametrize("text, problem", [
    ("N A\nP 1\nT 1\nO 1\n", "no DONE"),
    ("ERROR AllocateTensors\n", "AllocateTensors"),
    ("N A B\nP 1\nT 1\nO 1\nDONE\n", "2 tags"),
])
def test_parse_refuses_broken_runs(bench, text, problem):
    with pytest.raises(ValueError, match=problem):
        bench.parse_tflm_output(text)


def test_fnv1a_matches_the_images_hash(bench):
    assert bench.fnv1a(b"") == 2166136261
    assert bench.fnv1a(b"a") == 0xE40C292C  # the published FNV-1a 32 test vector


def test_rows_and_summary(bench):
    ops = [{"index": 0, "op": "CONV_2D", "dtype": "i8", "shape": "s"},
           {"index": 1, "op": "SOFTMAX", "dtype": "i8", "shape": "s"},
           {"index": 2, "op": "SOFTMAX", "dtype": "i8", "shape": "s"}]
    run = bench.TflmRun(["CONV_2D", "SOFTMAX", "SOFTMAX"], np.array([[100, 50, 10]]), [160],
                        [0])
    rows = bench.model_rows("m", ops, np.array([2000.0, 2400.0, 1000.0]), run)
    assert [r["ratio"] for r in rows] == [0.5, 1.2, 2.5]
    lines = bench.format_model(rows, 1.0, 2000.0)
    assert lines[1].endswith("<<") and not lines[2].endswith("<<")  # 2.5x but < 2,000
    groups = {g["op"]: g for g in bench.summary(rows, 2000.0)}
    assert groups["SOFTMAX"]["worst"] == 1.2 and groups["SOFTMAX"]["worst_at"] == "m#1"
    assert groups["SOFTMAX"]["ours"] == 3400.0 and groups["SOFTMAX"]["cmsis"] == 2400.0
    with pytest.raises(ValueError, match="TFLM ran"):
        bench.model_rows("m", ops[:2], np.zeros(2), run)


def test_operators_run_inside_another_share_its_row(bench):
    """A patch stage's band loop, FC streaming and a fused RELU run inside one operator's
    call: the profile cannot split them, so both sides are summed into that row."""
    model_c = ("  /* 0: CONV_2D */ { /* ops 0..2 in 8 row bands, 9 steps */\n"
               "  /* 1: CONV_2D */ /* in the band loop above */\n"
               "  /* 2: ADD */ /* in the band loop above */\n"
               "  /* 3: DEPTHWISE_CONV_2D */ { /* ops 3, 4: FC streaming */\n"
               "  /* 4: FULLY_CONNECTED */ /* FC streaming: in op 3's band loop */\n"
               "  /* 5: RELU */ /* fused into op 4 */\n")
    from tinydeploy.profile import run_inside

    inside = run_inside(model_c)
    assert inside == {1: 0, 2: 0, 4: 3, 5: 4}
    rows = [{"index": k, "op": op, "ours": o, "cmsis": c}
            for k, (op, o, c) in enumerate([("CONV_2D", 900, 300), ("CONV_2D", 0, 300),
                                            ("ADD", 40, 100), ("DEPTHWISE_CONV_2D", 500, 400),
                                            ("FULLY_CONNECTED", 0, 100), ("RELU", 0, 50)])]
    merged = bench.merge_groups(rows, inside)
    assert [(r["index"], r["op"], r["ours"], r["cmsis"]) for r in merged] == [
        (0, "CONV_2D+CONV_2D+ADD", 940, 700),
        (3, "DEPTHWISE_CONV_2D+FULLY_CONNECTED+RELU", 500, 550)]
