"""Kernel overrides (tinydeploy/tflm_overrides.py): a board whose TFLM library lacks
per-channel FULLY_CONNECTED gets tinydeploy's kernel registered through the resolver's
registration argument -- only for a model with a per-channel FULLY_CONNECTED layer, and not
on a board whose library has the fix. The generated sources compile warning-free against
the stand-ins of each library (tests/tflm_standins.py) and the preprocessor turns the
override on exactly for the defective library's boards. Defects are read from the library
table or, for native / qemu-cm4, from the TFLM tree (the extractor's detection); the
validation report's explanation reproduces a defect on the host and names it only when that
reproduces the device's outputs.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import needs_tflm
import numpy as np
import pytest
from tflm_standins import CXX, fixtures, syntax_check, write_standins

from tinydeploy import render
from tinydeploy.boards import BOARDS
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load
from tinydeploy.hostref import HostModel
from tinydeploy.tflm_libraries import libraries
from tinydeploy.tflm_overrides import (
    _fc_simulate,
    explain_mismatch,
    library_defects,
    per_channel_fc_layers,
    plan,
    tree_defects,
    tree_facts,
)

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
CHIRALE = "chirale-2.0.0"
PER_CHANNEL = DATA / "sine_mlp.tflite"  # two per-channel Dense layers
PER_TENSOR = DATA / "hello_world_int8.tflite"  # Dense weights with one scale


@pytest.fixture()
def fixed_board(monkeypatch: pytest.MonkeyPatch):
    """A board whose library is Chirale with the fix (fc_per_channel true, its own header)."""
    lib = dataclasses.replace(libraries()[CHIRALE], id="fixed-1.0.0", name="Fixed_TFLM",
                              header="Fixed_TFLM.h", fc_per_channel=True)
    monkeypatch.setitem(libraries(), lib.id, lib)
    return dataclasses.replace(BOARDS["teensy41"], id="fixedboard", tflm_library=lib.id,
                               arduino_macros=("FIXED_BOARD_CORE",))


def _gen(tmp_path: Path, model: Path, boards: list, out: str = "fw") -> Path:
    render.generate(model, tmp_path / out, boards=boards, arena=8000, fmt="platformio")
    return next((tmp_path / out / "lib").glob("*/src"))


def _include_dirs(tmp_path: Path) -> list[Path]:
    inc = write_standins(fixtures()[CHIRALE], tmp_path / "standins")
    (inc / "Fixed_TFLM.h").write_text("/* the fixed library's main header (stand-in) */\n")
    return [inc]


def _override_on(src: Path, inc: list[Path], define: str) -> bool:
    """TD_OVERRIDE_FULLY_CONNECTED as the preprocessor sees it for one board."""
    probe = src / "probe.cpp"
    probe.write_text('#include "td_tflm_overrides.h"\n'
                     "#if TD_OVERRIDE_FULLY_CONNECTED\nint on = 1;\n#else\nint on = 0;\n#endif\n")
    out = subprocess.run(["g++", "-E", "-P", f"-I{src}", *(f"-I{p}" for p in inc),
                          f"-I{ROOT / 'tests' / 'stubs'}", f"-D{define}", str(probe)],
                         capture_output=True, text=True, check=True).stdout
    probe.unlink()
    return "int on = 1;" in out


def test_override_registered_for_a_library_without_per_channel_fc(tmp_path: Path) -> None:
    assert library_defects(libraries()[CHIRALE]) == {"fc_per_channel"}
    src = _gen(tmp_path, PER_CHANNEL, ["nano33ble", "rpipico"])
    app = (src / "td_tflm_app.cpp").read_text()
    assert "resolver.AddFullyConnected(td_fc_registration())" in app
    assert '#include "td_tflm_fc.h"' in app and "td_fc_set_pool(" in app
    assert {"td_tflm_fc.cpp", "td_tflm_fc.h", "td_kernels_fc_plain.c", "td_kernels_conv_ref.c",
            "td_simd.h", "td_tflm_overrides.h"} <= {p.name for p in src.iterdir()}
    header = (src / "td_tflm_overrides.h").read_text()
    assert "#define TD_FC_POOL_WORDS 97u" in header  # (16 + 16) * 3 + 1 * 1 words
    readme = (tmp_path / "fw" / "README.md").read_text()
    assert "## Kernel overrides" in readme and "2 such layer(s)" in readme
    assert "outputs will differ" not in readme  # the override fixes it: no warning
    inc = _include_dirs(tmp_path)
    for board in ("nano33ble", "rpipico"):
        define = BOARDS[board].define
        proc = syntax_check([src / "td_tflm_app.cpp", src / "td_tflm_fc.cpp",
                             tmp_path / "fw" / "src" / "tinydeploy" / "main.cpp"],
                            src, inc, [define])
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert _override_on(src, inc, define)
    # the copied C kernels compile warning-free and define every td_ function the kernel calls
    objs = []
    for c in sorted(src.glob("td_kernels*.c")):
        objs.append(tmp_path / (c.stem + ".o"))
        subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-c", str(c), "-o",
                        str(objs[-1])], check=True)
    subprocess.run(["g++", *CXX[2:], f"-I{src}", f"-I{inc[0]}", f"-I{ROOT / 'tests' / 'stubs'}",
                    f"-D{BOARDS['nano33ble'].define}", "-c", str(src / "td_tflm_fc.cpp"),
                    "-o", str(tmp_path / "fc.o")], check=True)
    nm = subprocess.run(["nm", *map(str, objs), str(tmp_path / "fc.o")], capture_output=True,
                        text=True, check=True).stdout.split()
    needed = {s for a, s in zip(nm, nm[1:], strict=False) if a == "U" and s.startswith("td_")}
    assert needed and needed <= {s for a, s in zip(nm, nm[1:], strict=False) if a == "T"}


def test_no_override_for_a_library_with_the_fix(tmp_path: Path, fixed_board) -> None:
    assert library_defects(fixed_board.tflm_lib) == frozenset()
    src = _gen(tmp_path, PER_CHANNEL, [fixed_board])
    app = (src / "td_tflm_app.cpp").read_text()
    assert "td_fc_registration" not in app and "resolver.AddFullyConnected()" in app
    assert not (src / "td_tflm_fc.cpp").exists() and not (src / "td_tflm_overrides.h").exists()
    assert "Kernel overrides" not in (tmp_path / "fw" / "README.md").read_text()


def test_mixed_boards_switch_per_library(tmp_path: Path, fixed_board) -> None:
    """One project for a defective and a fixed library: the override is compiled in, the
    preprocessor registers it only for the defective library's board."""
    src = _gen(tmp_path, PER_CHANNEL, [BOARDS["nano33ble"], fixed_board])
    inc = _include_dirs(tmp_path)
    assert _override_on(src, inc, BOARDS["nano33ble"].define)
    assert not _override_on(src, inc, fixed_board.define)
    for board in (BOARDS["nano33ble"], fixed_board):
        proc = syntax_check([src / "td_tflm_app.cpp", src / "td_tflm_fc.cpp"], src, inc,
                            [board.define])
        assert proc.returncode == 0, (board.id, proc.stderr[-3000:])


def test_no_override_for_a_model_without_per_channel_fc(tmp_path: Path) -> None:
    assert per_channel_fc_layers(load(PER_TENSOR)) == 0
    assert per_channel_fc_layers(load(PER_CHANNEL)) == 2
    src = _gen(tmp_path, PER_TENSOR, ["nano33ble"])
    assert "td_fc_registration" not in (src / "td_tflm_app.cpp").read_text()
    assert not (src / "td_tflm_fc.cpp").exists()


def test_override_tables_are_in_the_ram_budget() -> None:
    facts = load(PER_CHANNEL)
    board = BOARDS["nano33ble"]
    p = plan(facts, [board])
    assert p.ram_bytes(facts, board) == 4 * 97
    assert render.budget(facts, board, 4000, p.ram_bytes(facts, board)).ram_used == \
        render.budget(facts, board, 4000).ram_used + 388


def test_a_16x8_fully_connected_keeps_the_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """tinydeploy's kernel is int8: a per-channel layer it cannot take stays a warning."""
    import tinydeploy.tflm_overrides as ov

    o = dataclasses.replace(ov.OVERRIDES[0], unsupported=lambda f: "1 layer with int16 input")
    monkeypatch.setattr(ov, "OVERRIDES", (o,))
    p = ov.plan(load(PER_CHANNEL), [BOARDS["nano33ble"]])
    assert not p.active and len(p.warnings) == 1
    assert "outputs will differ" in p.warnings[0] and "--runtime c" in p.warnings[0]


# --- the defect in a TFLM tree ------------------------------------------------------------------
def _tree(root: Path, header: str, cmsis: str | None = None, common: str = "") -> Path:
    """A minimal Arduino TFLM library tree with the given FULLY_CONNECTED sources."""
    kernels = root / "src" / "tensorflow" / "lite" / "micro" / "kernels"
    kernels.mkdir(parents=True)
    (root / "library.properties").write_text("name=Tree_TFLM\nversion=1.0.0\n")
    micro = root / "src" / "tensorflow" / "lite" / "micro"
    (micro / "micro_interpreter.h").write_text(
        "namespace tflite {\nclass MicroInterpreter {\n public:\n  MicroInterpreter(const "
        "Model* m, const MicroOpResolver& r, uint8_t* a, size_t n);\n};\n}\n")
    (micro / "micro_mutable_op_resolver.h").write_text(
        "namespace tflite {\ntemplate <unsigned int N>\nclass MicroMutableOpResolver {\n"
        " public:\n  TfLiteStatus AddFullyConnected(const TfLiteRegistration& r = "
        "Register_FULLY_CONNECTED()) { return x; }\n};\n}\n")
    (kernels / "fully_connected.h").write_text(header)
    (kernels / "fully_connected_common.cpp").write_text(common)
    if cmsis is not None:
        (kernels / "cmsis_nn").mkdir()
        (kernels / "cmsis_nn" / "fully_connected.cpp").write_text(cmsis)
    return root


def test_defect_detected_in_a_tree(tmp_path: Path) -> None:
    with_flag = "struct OpDataFullyConnected { bool is_per_channel; };\n"
    cases = {  # tree -> FULLY_CONNECTED honours per-channel scales
        "old": (_tree(tmp_path / "old", "struct OpDataFullyConnected { int x; };\n"), False),
        "fixed": (_tree(tmp_path / "fixed", with_flag, "if (data.is_per_channel) {}\n"), True),
        "cmsis_old": (_tree(tmp_path / "cmsis_old", with_flag, "// per tensor only\n"), False),
        "refuses": (_tree(tmp_path / "refuses", with_flag, common="TF_LITE_ENSURE_MSG(c, s == 1,"
                          ' "FullyConnected per-channel quantization not yet supported.");'),
                    False),
        "hexagon_only": (_tree(tmp_path / "hexagon_only", with_flag, common="#ifdef HEXAGON\n"
                               ' "FullyConnected per-channel quantization not yet supported on '
                               'Hexagon. "\n#endif\n'), True),
    }
    for name, (root, ok) in cases.items():
        assert tree_facts(root / "src") == {"fc_per_channel": ok}, name
        assert tree_defects(root) == (frozenset() if ok else {"fc_per_channel"}), name
    # the extractor writes the same fact into a library's fixture
    for name in ("old", "fixed"):
        proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "extract_tflm_facts.py"),
                               str(cases[name][0]), "--id", name, "--tflm-date", "2024-01"],
                              capture_output=True, text=True, check=True)
        assert json.loads(proc.stdout)["fc_per_channel"] is cases[name][1]


def test_native_firmware_follows_the_tree(tmp_path: Path) -> None:
    """generate for native / qemu-cm4 (what build_tflm_firmware renders) takes the defects
    of the TFLM tree it is built against."""
    old = _tree(tmp_path / "old", "struct OpDataFullyConnected { int x; };\n")
    fixed = _tree(tmp_path / "fixed", "struct D { bool is_per_channel; };\n")
    for tree, expect in ((old, True), (fixed, False)):
        out = tmp_path / f"native_{tree.name}"
        render.generate(PER_CHANNEL, out, boards=["native"], arena=8000, fmt="platformio",
                        tflm_src=tree)
        app = next((out / "lib").glob("*/src/td_tflm_app.cpp")).read_text()
        assert ("td_fc_registration()" in app) is expect, tree.name
    with pytest.raises(TinyDeployError):  # a folder that is no TFLM tree
        render.generate(PER_CHANNEL, tmp_path / "bad", boards=["native"], arena=8000,
                        fmt="platformio", tflm_src=tmp_path)


# --- the validation report ----------------------------------------------------------------------
@needs_tflm.mark
def test_explain_names_the_defect_only_when_it_reproduces_the_device() -> None:
    facts = load(PER_CHANNEL)
    x = np.load(DATA / "sine_mlp.inputs.npy").astype(np.int8)
    host = HostModel(facts).predict_all([x])
    defective = HostModel(load(_fc_simulate(facts))).predict_all([x])
    assert not np.array_equal(host[0], defective[0])  # the defect changes this model
    found = explain_mismatch(facts, [x], defective)
    assert [f.defect for f in found] == ["fc_per_channel"]
    assert "one weight scale" in found[0].text and "16 samples" in found[0].text
    assert found[0].to_dict()["layers"] == 2
    assert explain_mismatch(facts, [x], host) == []  # the right outputs: nothing to name
    noisy = [defective[0].copy()]
    noisy[0].reshape(-1)[0] ^= 1
    assert explain_mismatch(facts, [x], noisy) == []  # one value off: no claim
    assert explain_mismatch(load(PER_TENSOR), [x], host) == []  # no affected layer


def test_generated_registration_matches_the_table(tmp_path: Path) -> None:
    """Every op the table overrides is registered with its expression and nothing else."""
    src = _gen(tmp_path, DATA / "digits_cnn.tflite", ["nano33ble"])
    app = (src / "td_tflm_app.cpp").read_text()
    with_args = re.findall(r"resolver\.(Add\w+)\(([^)]+\)?)\)", app)
    assert with_args == [("AddFullyConnected", "td_fc_registration()")]


def test_overrides_can_be_turned_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """TINYDEPLOY_NO_OVERRIDES=1: the library's own kernel and the old warning."""
    monkeypatch.setenv("TINYDEPLOY_NO_OVERRIDES", "1")
    p = plan(load(PER_CHANNEL), [BOARDS["nano33ble"]])
    assert not p.active and "TINYDEPLOY_NO_OVERRIDES" in p.warnings[0]
    src = _gen(tmp_path, PER_CHANNEL, ["nano33ble"])
    assert "td_fc_registration" not in (src / "td_tflm_app.cpp").read_text()
    assert "outputs will differ" in (tmp_path / "fw" / "README.md").read_text()
