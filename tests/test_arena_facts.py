"""Predictions against measured TFLM arena minima: never below, for both trees and both
enum sizes.

``tests/data/arena_measured.json`` holds facts only: the smallest arena measured on qemu-cm4
(``tinydeploy arena MODEL --target qemu-cm4 --tflm-src TREE``: one boot per trial, byte-exact,
min - 1 fails, min + 1 .. + 16 work) for the transpose-conv and strided-slice models of
``tests/data/arena/`` (``scripts/make_arena_models.py``) and ``tests/data/ext_ops/``, with the
upstream tree (tflite-micro 90b983c2, reference kernels) and Chirale_TensorFLowLite 2.0.0
(CMSIS-NN kernels), and with Chirale compiled with ``-fno-short-enums``. The CI tests check
today's predictions against them; ``test_remeasure_with_the_tree`` measures again where a
tree is given (``$TINYDEPLOY_TFLM_SRC``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from tinydeploy.arduino_cores import short_enums
from tinydeploy.arena.graph import Graph
from tinydeploy.arena.margin import int_enum_extra
from tinydeploy.arena.plan import plan_auto
from tinydeploy.arena.predict import predict_flavour
from tinydeploy.boards import BOARDS
from tinydeploy.facts import load

DATA = Path(__file__).parent / "data"
FACTS = json.loads((DATA / "arena_measured.json").read_text())
CASES = [(model, tree) for model, rows in FACTS["models"].items() for tree in rows
         if tree in FACTS["trees"] and "min_arena" in rows[tree]]
SHORT_ENUM_BOARD = {"cmsis-nn": "nano33ble"}  # a board of each flavour whose core is known
INT_ENUM_BOARD = "teensy41"  # enum flags unknown: the margin covers int enums


@pytest.mark.parametrize(("model", "tree"), CASES)
def test_prediction_is_never_below_the_measured_minimum(model: str, tree: str) -> None:
    t = FACTS["trees"][tree]
    measured = FACTS["models"][model][tree]["min_arena"]
    facts = load(DATA / FACTS["models"][model]["path"])
    pred = predict_flavour(facts, t["flavour"])
    if t.get("enums") == "int":  # -fno-short-enums: the margin of such a core covers it
        size = plan_auto(facts, [INT_ENUM_BOARD]).size
        assert size >= measured, (model, size, measured)
        return
    assert pred >= measured, (model, tree, pred, measured)
    assert pred <= measured + max(256, math.ceil(0.05 * measured)), (pred, measured)
    if t["flavour"] in SHORT_ENUM_BOARD:
        assert plan_auto(facts, [SHORT_ENUM_BOARD[t["flavour"]]]).size >= measured


def test_the_facts_name_their_trees() -> None:
    for tree in FACTS["trees"].values():
        assert tree["flavour"] in ("reference", "cmsis-nn") and len(tree["content_hash"]) == 64
    assert {"upstream", "chirale"} <= set(FACTS["trees"])
    for model, rows in FACTS["models"].items():
        assert (DATA / rows["path"]).is_file(), model


def test_margin_covers_int_sized_enums_where_the_core_may_use_them() -> None:
    """Cores read as short-enum get the 1 %; others at least the int-enum worst case."""
    assert short_enums(BOARDS["nano33ble"].arduino_fqbn) is True
    assert short_enums(BOARDS["rpipico"].arduino_fqbn) is True
    assert short_enums(BOARDS["teensy41"].arduino_fqbn) is None
    for name in ("ds_cnn_kws", "trained_lstm_int8", "sine_mlp"):
        facts = load(DATA / f"{name}.tflite")
        pred = predict_flavour(facts, "cmsis-nn")
        short = plan_auto(facts, ["nano33ble"])
        assert short.size == pred + math.ceil(0.01 * pred)
        extra = int_enum_extra(Graph.from_facts(facts, "cmsis-nn"))
        wide = plan_auto(facts, [INT_ENUM_BOARD])
        assert wide.size == pred + max(math.ceil(0.01 * pred), extra) and extra > 0
        assert plan_auto(facts, ["nano33ble", INT_ENUM_BOARD]).size == wide.size


TREE = os.environ.get("TINYDEPLOY_TFLM_SRC")


@pytest.mark.skipif(not TREE, reason="set TINYDEPLOY_TFLM_SRC to a TFLM tree (tflite-micro "
                    "checkout with its downloads, or Chirale_TensorFLowLite) to measure again")
def test_remeasure_with_the_tree() -> None:
    """The transpose-conv CNN measured now: the prediction for the tree's kernels is not
    below it, and a tree with a stored content hash measures the stored figure."""
    from tinydeploy.arena.measure import measure_arena

    model = "tconv_cnn_int8"
    m = measure_arena(DATA / FACTS["models"][model]["path"], TREE)
    assert all(m.verified.values())
    assert predict_flavour(DATA / FACTS["models"][model]["path"], m.flavour) >= m.arena_bytes
    for key, tree in FACTS["trees"].items():
        if tree["content_hash"] == m.tree_hash and tree.get("enums") != "int":
            assert m.arena_bytes == FACTS["models"][model][key]["min_arena"]


def test_the_one_percent_alone_would_not_cover_int_sized_enums() -> None:
    """Why a core with -fno-short-enums gets the larger margin: measured, the 1 % of a
    short-enum board falls short on some models."""
    rows = [(m, r["chirale_int_enums"]["min_arena"]) for m, r in FACTS["models"].items()
            if "min_arena" in r.get("chirale_int_enums", {})]
    short = [m for m, need in rows
             if plan_auto(load(DATA / FACTS["models"][m]["path"]), ["nano33ble"]).size < need]
    assert rows and short, rows
