"""Generated TFLM firmware with several inputs / large tensors: every tensor in
model_settings.h, the app binds each to the arena (compiled against the stand-in headers;
with TINYDEPLOY_TFLM_ARDUINO_LIB pointing at a TFLM Arduino library's ``src`` folder, also
against its real headers)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from tflm_standins import board_standins

from tinydeploy import render
from tinydeploy.boards import get_board

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
STUBS = ROOT / "tests" / "stubs"
GROUND = json.loads((DATA / "ground_truth.json").read_text())
GXX = shutil.which("g++")
needs_gxx = pytest.mark.skipif(GXX is None, reason="g++ not installed")


def _gen(tmp_path: Path, model: str) -> Path:
    render.generate(DATA / f"{model}.tflite", tmp_path / "fw", boards=["nano33ble", "esp32-s3"],
                    arena=GROUND[model]["min_arena_cm4"] + 1024, fmt="platformio")
    return next((tmp_path / "fw" / "lib").glob("*/src"))  # the generated library


def _syntax(src: Path, includes: list[Path], defines: list[str],
            system: tuple[Path, ...] = ()) -> None:
    """-fsyntax-only with -Wall -Wextra -Werror (a library's own headers as -isystem)."""
    cmd = [str(GXX), "-fsyntax-only", "-std=c++17", "-Wall", "-Wextra", "-Werror",
           *[f"-I{i}" for i in includes], *[f"-isystem{i}" for i in system], f"-I{src}",
           *[f"-D{d}" for d in defines],
           str(src / "td_tflm_app.cpp")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


@needs_gxx
@pytest.mark.parametrize(("model", "n_in", "in_bytes", "out_bytes"),
                         [("simple_add_model", 2, 32_768, 16_384),
                          ("person_detect", 1, 9_216, 2)])
def test_every_tensor_in_settings_and_app(tmp_path: Path, model: str, n_in: int,
                                          in_bytes: int, out_bytes: int) -> None:
    src = _gen(tmp_path, model)
    settings = (src / "model_settings.h").read_text()
    assert f"#define TD_NUM_INPUTS {n_in}\n" in settings
    assert f"#define TD_INPUT_BYTES {in_bytes}u" in settings
    assert f"#define TD_OUTPUT_BYTES {out_bytes}u" in settings
    entries = re.search(r"#define TD_INPUT_TENSORS \\\n((?:.*\\\n)*.*)\n", settings)
    assert entries is not None and entries.group(1).count("TD_DTYPE_INT8") == n_in
    app = (src / "td_tflm_app.cpp").read_text()
    assert "interpreter.inputs_size() != TD_NUM_INPUTS" in app and "ResetState(" in app
    for board in ("nano33ble", "esp32-s3"):  # Reset() and ResetVariableTensors() branches
        _syntax(src, [board_standins(), STUBS], [get_board(board).define])


@needs_gxx
def test_app_compiles_against_a_real_tflm_library(tmp_path: Path) -> None:
    lib = os.environ.get("TINYDEPLOY_TFLM_ARDUINO_LIB")
    if not lib or not Path(lib).is_dir():
        pytest.skip("set TINYDEPLOY_TFLM_ARDUINO_LIB to a TFLM Arduino library's src folder "
                    "(e.g. Chirale_TensorFlowLite/src) to check against its real headers")
    src = _gen(tmp_path, "simple_add_model")
    arduino = tmp_path / "arduino"
    arduino.mkdir()
    shutil.copy(STUBS.parent / "arduino_host" / "Arduino.h", arduino / "Arduino.h")
    (arduino / "Wire.h").write_text("/* stand-in: the library's peripherals.h includes it */\n")
    # ARDUINO as every Arduino core defines it (Chirale's main header requires it)
    _syntax(src, [arduino], [get_board("nano33ble").define, "ARDUINO=10819"],
            system=(Path(lib),))
