"""Arena search: host64 measured byte-exactly, cortex-m predicted within the bound."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import needs_tflm
import pytest
from models import GENERATED

from tinydeploy.arena.graph import Graph
from tinydeploy.arena.host import HostRuntime, parse_allocations
from tinydeploy.arena.predict import predict_arena
from tinydeploy.arena.replay import (
    CORTEX_M,
    HOST64_NATIVE,
    Abi,
    greedy_plan,
    planned_buffers,
    predict,
    simulate,
)
from tinydeploy.arena.search import arena
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load

DATA = Path(__file__).parent / "data"
TRUTH = json.loads((DATA / "ground_truth.json").read_text())
MODELS = GENERATED  # the zoo: tests/test_zoo*.py

_CHILD = r"""
import sys, numpy as np
from tflite_micro.python.tflite_micro import runtime
it = runtime.Interpreter.from_bytes(open(sys.argv[1], "rb").read(), arena_size=int(sys.argv[2]))
d = it.get_input_details(0)
it.set_input(np.zeros(tuple(int(x) for x in d["shape"]), dtype=d["dtype"]), 0)
it.invoke()
print("INVOKED")
"""


def _fresh_child_works(model: Path, size: int) -> bool:
    """One trial in a brand-new Python process (not forked from the search)."""
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(model), str(size)],
                          capture_output=True, text=True, timeout=120)
    return proc.returncode == 0 and "INVOKED" in proc.stdout


@pytest.mark.parametrize("name", MODELS)
@needs_tflm.mark  # measured with the TFLM Python runtime
def test_cortex_m_prediction_within_bound(name: str) -> None:
    result = arena(DATA / f"{name}.tflite")
    truth = TRUTH[name]["min_arena_cm4"]
    assert result.target == "cortex-m"
    assert truth <= result.arena_bytes <= 1.05 * truth + 32, (result.arena_bytes, truth)
    assert result.breakdown["head (planned tensors)"] > 0
    # the 32-bit figure must be well below the 64-bit runtime's needs
    assert result.arena_bytes < result.host64_used_bytes + 512


@pytest.mark.parametrize("name", ["sine_mlp", "tanh_mlp", "concat_branches"])
@needs_tflm.mark  # measured with the TFLM Python runtime
def test_host64_search_is_exact(name: str) -> None:
    model = DATA / f"{name}.tflite"
    result = arena(model, target="host64")
    n = result.arena_bytes
    assert result.host64_bytes == n and result.trials > 5
    assert _fresh_child_works(model, n)
    assert not _fresh_child_works(model, n - 1)


@needs_tflm.mark  # measured with the TFLM Python runtime
def test_host64_sine_crash_region_is_survived() -> None:
    # sine_mlp segfaults the runtime for some sizes just below its minimum
    result = arena(DATA / "sine_mlp.tflite", target="host64")
    assert result.arena_bytes == 2192
    assert result.crashes > 0


def test_allocator_model_matches_native_64bit_ground_truth() -> None:
    """The same replay with 8-byte pointers reproduces native x86-64 TFLM's
    arena_used_bytes exactly and its minimum arena to within 16 bytes (never below) --
    a check of the allocator model independent of the Cortex-M numbers."""
    for name in MODELS:
        g = Graph.from_facts(load(DATA / f"{name}.tflite"))
        assert simulate(g, 1 << 20, HOST64_NATIVE)["used"] == \
            TRUTH[name]["arena_used_bytes_host64"], name
        n, _ = predict(g, HOST64_NATIVE)
        assert 0 <= n - TRUTH[name]["min_arena_host64"] <= 16, name


@pytest.mark.parametrize("name", MODELS)
@needs_tflm.mark  # measured with the TFLM Python runtime
def test_replayed_plan_equals_runtime_head(name: str) -> None:
    """The greedy-planner port gives the head the TFLM runtime itself reports."""
    facts = load(DATA / f"{name}.tflite")
    with HostRuntime(facts.data) as rt:
        head = parse_allocations(rt.probe())["head"]
    assert greedy_plan(planned_buffers(Graph.from_facts(facts))) == head
    assert predict_arena(facts, measure=False) == predict_arena(facts)


def test_struct_sizes() -> None:
    assert CORTEX_M.eval_tensor == 12 and HOST64_NATIVE.eval_tensor == 24
    assert CORTEX_M.node_and_registration == 32 and HOST64_NATIVE.node_and_registration == 64
    # arm-none-eabi: short enums (1 byte) shrink TfLiteTensor from 40 to 32 bytes
    assert CORTEX_M.tflite_tensor == 32 and HOST64_NATIVE.tflite_tensor == 64
    assert Abi("x", 4).struct("b", "i") == 8


def test_greedy_plan_reuses_memory() -> None:
    # a (t0-1) and c (t2-3) never overlap: c reuses a's space
    assert greedy_plan([(112, 0, 1), (64, 1, 2), (112, 2, 3)]) == 176
    # equal sizes go in reverse order of addition (TFLM fills its sort array from the end)
    assert greedy_plan([(384, 0, 1), (384, 1, 2), (1984, 2, 3), (992, 3, 4), (1920, 4, 5),
                        (1920, 5, 5)]) == 4832
    assert greedy_plan([(16, 0, 0)]) == 16
    assert greedy_plan([]) == 0


def test_predict_arena_helper_is_conservative() -> None:
    for name in ("sine_mlp", "digits_cnn"):
        n = predict_arena(DATA / f"{name}.tflite")
        assert n >= TRUTH[name]["min_arena_cm4"]


@needs_tflm.mark  # measured with the TFLM Python runtime
def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    from tinydeploy.cli import main

    assert main(["arena", str(DATA / "digits_cnn.tflite"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["target"] == "cortex-m"
    assert out["arena_bytes"] >= TRUTH["digits_cnn"]["min_arena_cm4"]
    assert "TfLiteEvalTensor" in out["breakdown"]
    assert out["host64"]["breakdown"]["head"] > 0  # JSON groups figures per ABI


def test_cli_summary(capsys: pytest.CaptureFixture[str]) -> None:
    from tinydeploy.cli import main

    assert main(["arena", str(DATA / "tanh_mlp.tflite")]) == 0
    assert "cortex-m" in capsys.readouterr().out


def test_unreadable_model(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(TinyDeployError) as exc:
        arena(bad)
    assert exc.value.code == "bad_flatbuffer"
    with pytest.raises(TinyDeployError) as exc:
        arena(tmp_path / "missing.tflite")
    assert exc.value.code == "file_not_found"
    with pytest.raises(TinyDeployError) as exc:
        arena(DATA / "sine_mlp.tflite", target="esp32")
    assert exc.value.code == "bad_argument"
