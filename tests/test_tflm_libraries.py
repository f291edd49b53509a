"""TFLM libraries as data: the table agrees with the facts extracted from the real trees,
the generated firmware compiles against every usable library's API (and fails against
TensorFlowLite_ESP32 1.0.0), generate refuses operators a board's library lacks, and the
README and platformio.ini tell the exact, pinned library.

With ``TINYDEPLOY_CHIRALE_SRC`` pointing at a Chirale_TensorFlowLite 2.0.0 tree (the folder
with library.properties), the generated sources are also compiled against its real headers.
"""

from __future__ import annotations

import configparser
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tflm_standins import CXX, STUBS, fixtures, syntax_check, write_standins

from tinydeploy import render
from tinydeploy.boards import BOARDS
from tinydeploy.cli import main
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import OpFacts, load
from tinydeploy.ops import TFLM_OPS
from tinydeploy.tflm_libraries import FIRMWARE_CTOR, libraries

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
FIXTURE_DIR = Path(__file__).parent / "fixtures" / "tflm"
MCU = [b.id for b in BOARDS.values() if b.is_mcu]
FACTS = fixtures()
USABLE = sorted(i for i, lib in libraries().items() if lib.firmware_compatible)
BROKEN = "tensorflowlite_esp32-1.0.0"


def _arena_ctor(facts: dict) -> list[dict]:
    return next(c for c in facts["interpreter"]["ctors"] if any(p["type"] == "uint8_t*" for p in c))


# --- the table is the facts ----------------------------------------------------------------
def test_every_table_library_has_a_fixture_and_agrees_with_it() -> None:
    assert set(libraries()) == set(FACTS)
    for lib_id, lib in libraries().items():
        f = FACTS[lib_id]
        ctor = _arena_ctor(f)
        assert (lib.name, lib.version, lib.header) == (f["name"], f["version"], f["main_header"])
        assert f["main_header_present"]
        assert (lib.tflm_date, list(lib.tflm_window or [])) == (f["tflm_date"], f["tflm_window"])
        assert lib.kernels == f["kernels"] and lib.precompiled == f["precompiled"]
        assert list(lib.architectures) == f["architectures"]
        assert list(lib.ctor_required) == [p["type"] for p in ctor if p["default"] is None]
        assert list(lib.ctor_optional) == [p["type"] for p in ctor if p["default"] is not None]
        assert lib.resolver_methods == set(f["resolver"]["methods"])


def test_known_facts_of_the_libraries() -> None:
    libs = libraries()
    chirale = libs["chirale-2.0.0"]
    assert chirale.name == "Chirale_TensorFLowLite"  # capital L: the Library Manager name
    assert chirale.lib_deps == "spaziochirale/Chirale_TensorFLowLite@2.0.0"
    assert chirale.tflm_date == "2023-01" and chirale.kernels == "cmsis-nn"
    assert {"mbed_nano", "esp32"} <= set(chirale.architectures)
    assert chirale.lacks(["AddBatchMatMul", "AddEmbeddingLookup", "AddReverseV2",
                          "AddFullyConnected"]) == ["AddBatchMatMul", "AddEmbeddingLookup",
                                                    "AddReverseV2"]
    old = libs[BROKEN]
    assert old.tflm_date == "2022-05" and "ErrorReporter*" in old.ctor_required
    assert not old.firmware_compatible
    esp = libs["tflm_esp32-2.0.0"]
    assert esp.kernels == "esp-nn" and esp.tflm_date == "2024-07" and esp.precompiled == "full"
    # every resolver method tinydeploy's op table uses exists in the newest library but one
    assert {o.resolver for o in TFLM_OPS.values()} - esp.resolver_methods == {"AddReverseV2"}


@pytest.mark.parametrize("board", MCU)
def test_every_board_names_a_pinned_usable_library(board: str) -> None:
    b = BOARDS[board]
    lib = b.tflm_lib
    assert lib is not None and lib.firmware_compatible and lib.ctor_required == FIRMWARE_CTOR
    assert re.fullmatch(r"[\w.-]+/[\w.-]+@\d+\.\d+\.\d+", b.tflm_lib_deps or "")
    assert b.tflm_header == lib.header and b.tflm_arduino_lib == lib.name
    assert b.to_dict()["tflm_lib_deps"] == lib.lib_deps


# --- the generated sources compile against each library's facts -------------------------------
def _project(tmp_path: Path, lib_id: str, fmt: str = "both"):
    boards = [dataclasses.replace(BOARDS[b], tflm_library=lib_id) for b in MCU]
    return render.generate(DATA / "ds_cnn_kws.tflite", tmp_path / "fw", boards=boards,
                           arena=40000, fmt=fmt)


def _lib_src(tmp_path: Path) -> Path:
    """The generated library's ``src`` inside the PlatformIO project (``lib/NAME/src``)."""
    return next((tmp_path / "fw" / "lib").glob("*/src"))


@pytest.mark.parametrize("lib_id", USABLE)
def test_generated_firmware_compiles_against_the_library(tmp_path: Path, lib_id: str) -> None:
    inc = [write_standins(FACTS[lib_id], tmp_path / "standins")]
    res = _project(tmp_path, lib_id)
    src = _lib_src(tmp_path)
    app = (src / "td_tflm_app.cpp").read_text()
    assert f"#include <{libraries()[lib_id].header}>" in app
    server = tmp_path / "fw" / "src" / "tinydeploy" / "main.cpp"
    proc = syntax_check([server, src / "td_tflm_app.cpp"], src, inc, [BOARDS[MCU[0]].define])
    assert proc.returncode == 0, proc.stderr[-3000:]
    for board in MCU[1:]:
        proc = syntax_check([src / "td_tflm_app.cpp"], src, inc, [BOARDS[board].define])
        assert proc.returncode == 0, (board, proc.stderr[-3000:])
    sketch = res.sketch_dir
    assert sketch is not None  # the Arduino library: the core's macro picks the board
    proc = syntax_check([sketch / "examples" / "validate" / "validate.ino",
                         sketch / "src" / "td_tflm_app.cpp"], sketch / "src", inc)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_tensorflowlite_esp32_1_0_0_does_not_compile(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The old ESP32 library fails for the constructor, and generate refuses it up front."""
    with pytest.raises(TinyDeployError) as exc:
        _project(tmp_path, BROKEN, fmt="platformio")
    assert exc.value.code == "bad_argument" and "ErrorReporter*" in str(exc.value)
    assert not (tmp_path / "fw").exists()
    monkeypatch.setattr(render, "check_boards", lambda *a: None)  # render it anyway
    _project(tmp_path, BROKEN, fmt="platformio")
    src = _lib_src(tmp_path)
    inc = [write_standins(FACTS[BROKEN], tmp_path / "standins")]
    proc = syntax_check([src / "td_tflm_app.cpp"], src, inc,
                        [BOARDS["esp32-s3"].define])
    assert proc.returncode != 0
    err = proc.stderr
    assert "MicroInterpreter" in err and "no matching function" in err, err[-2000:]
    assert "ErrorReporter" in err  # the candidate the compiler shows needs one
    errors = [line for line in err.splitlines() if "error:" in line]
    assert errors and all("MicroInterpreter" in line for line in errors), errors


def test_a_missing_resolver_method_fails_the_compile(tmp_path: Path) -> None:
    """The stand-ins are strict: a method the library lacks is a compile error."""
    facts = json.loads(json.dumps(FACTS["chirale-2.0.0"]))
    facts["resolver"]["methods"].remove("AddConv2D")
    inc = [write_standins(facts, tmp_path / "standins")]
    _project(tmp_path, "chirale-2.0.0", fmt="platformio")
    src = _lib_src(tmp_path)
    proc = syntax_check([src / "td_tflm_app.cpp"], src, inc, [BOARDS["nano33ble"].define])
    assert proc.returncode != 0 and "AddConv2D" in proc.stderr


# --- generate refuses what the board's library lacks ----------------------------------------
@pytest.mark.parametrize("op", ["BATCH_MATMUL", "EMBEDDING_LOOKUP"])
def test_generate_refuses_an_op_the_library_lacks(tmp_path: Path, op: str) -> None:
    facts = load(DATA / "sine_mlp.tflite")
    bad = dataclasses.replace(facts, ops=[*facts.ops, OpFacts(op, 1, 1)])
    with pytest.raises(TinyDeployError) as exc:
        render.generate(bad, tmp_path / "fw", boards=["nucleo_f446re"], arena=4096)
    err = exc.value
    msg = str(err)
    assert err.code == "unsupported_op" and err.exit_code == 3
    assert op in msg and "nucleo_f446re" in msg and "Chirale_TensorFLowLite 2.0.0" in msg
    assert "\n" not in msg
    assert not (tmp_path / "fw").exists()


def test_cli_generate_refusal_is_one_line_exit_3(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A real full-int8 model with BATCH_MATMUL (tf.matmul of two activations, made with
    the TFLite converter): the guard accepts it (TFLM has the op), the board's library not."""
    model = FIXTURE_DIR / "batch_matmul_int8.tflite"
    assert main(["check", str(model)]) == 0
    capsys.readouterr()
    rc = main(["generate", str(model), "--out", str(tmp_path / "fw"), "--board", "esp32-s3"])
    out = capsys.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if line.strip()]
    assert rc == 3 and len(lines) == 1, lines
    assert "BATCH_MATMUL" in lines[0] and "esp32-s3" in lines[0]
    assert "Chirale_TensorFLowLite 2.0.0" in lines[0]
    assert not (tmp_path / "fw").exists()


# --- README and platformio.ini tell the truth -------------------------------------------------
def test_readme_and_platformio_name_the_exact_pinned_library(tmp_path: Path) -> None:
    render.generate(DATA / "sine_mlp.tflite", tmp_path / "fw", boards=MCU, arena=4096)
    readme = (tmp_path / "fw" / "README.md").read_text()
    assert 'arduino-cli lib install "Chirale_TensorFLowLite@2.0.0"' in readme
    assert "**Chirale_TensorFLowLite** version 2.0.0" in readme
    assert "2023-01" in readme and "CMSIS-NN" in readme
    assert "TensorFlowLite_ESP32" not in readme and "Chirale_TensorFlowLite@" not in readme
    # the IDE warning for exactly the boards outside library.properties architectures=
    arduino = readme.split("## Build with the Arduino IDE")[1].split("## Check it")[0]
    warned = set(re.findall(r"\* `(\w[\w-]*)` \(core architecture `(\w+)`\)", arduino))
    assert warned == {("rpipico", "mbed_rp2040"), ("nucleo_f446re", "stm32"),
                      ("teensy41", "avr")}
    assert "may be incompatible with your current board which runs on avr" in " ".join(
        arduino.split())
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(tmp_path / "fw" / "platformio.ini")
    for board in MCU:
        deps = ini[f"env:{board}"]["lib_deps"].strip()
        assert deps == "spaziochirale/Chirale_TensorFLowLite@2.0.0"
        assert "^" not in deps and "~" not in deps


# --- the extractor reads a tree on disk --------------------------------------------------------
def test_extractor_reads_a_library_tree(tmp_path: Path) -> None:
    """scripts/extract_tflm_facts.py on a small hand-made library tree (no real library)."""
    lib = tmp_path / "MyTFLM"
    micro = lib / "src" / "tensorflow" / "lite" / "micro"
    (micro / "kernels" / "esp_nn").mkdir(parents=True)
    (lib / "library.properties").write_text(
        "name=My_TFLM\nversion=1.2.3\narchitectures=esp32, rp2040\nincludes=MyTFLM.h\n")
    (lib / "src" / "MyTFLM.h").write_text("// main\n")
    (micro / "kernels" / "esp_nn" / "conv.cpp").write_text("// kernel\n")
    (micro / "micro_interpreter.h").write_text(
        "#define TFLITE_SCHEMA_VERSION (3)\nnamespace tflite {\nclass MicroInterpreter {\n"
        " public:\n  MicroInterpreter(const Model* model, const MicroOpResolver& r,\n"
        "      uint8_t* arena, size_t size, /* ) */ bool keep = false);\n"
        "  TfLiteStatus Invoke();\n  size_t arena_used_bytes() const { return 0; }\n"
        " private:\n  TfLiteStatus Hidden();\n};\n}\n")
    (micro / "micro_mutable_op_resolver.h").write_text(
        "namespace tflite {\ntemplate <unsigned int tOpCount>\n"
        "class MicroMutableOpResolver : public MicroOpResolver {\n public:\n"
        "  TfLiteStatus AddCustom(const char* name, TfLiteRegistration* r) { return x; }\n"
        "  TfLiteStatus AddAdd(const TfLiteRegistration& r = Register_ADD()) { return y(); }\n"
        "  // TfLiteStatus AddCommentedOut();\n  TfLiteStatus AddTanh() { return z(); }\n"
        " private:\n  TfLiteStatus AddBuiltin(int op) { return w; }\n};\n}\n")
    out = tmp_path / "facts.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "extract_tflm_facts.py"),
                           str(lib), "--id", "my-1.2.3", "--tflm-date", "2025-02", "--out",
                           str(out)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    f = json.loads(out.read_text())
    assert (f["name"], f["version"], f["main_header"]) == ("My_TFLM", "1.2.3", "MyTFLM.h")
    assert f["architectures"] == ["esp32", "rp2040"] and f["kernels"] == "esp-nn"
    assert f["resolver"]["methods"] == ["AddAdd", "AddTanh"]
    assert f["resolver"]["methods_with_arguments"] == ["AddCustom"]
    assert [p["type"] for p in f["interpreter"]["ctors"][0]] == [
        "const Model*", "const MicroOpResolver&", "uint8_t*", "size_t", "bool"]
    assert f["interpreter"]["methods"] == ["TfLiteStatus Invoke()",
                                           "size_t arena_used_bytes() const"]
    assert f["schema_version_macro"]["value"] == 3 and f["tflm_date"] == "2025-02"
    assert not f["headers"]["tensorflow/lite/c/common.h"]


# --- against the real Chirale tree (when it is on disk) ---------------------------------------
CHIRALE_SRC = os.environ.get("TINYDEPLOY_CHIRALE_SRC")
needs_chirale = pytest.mark.skipif(
    not CHIRALE_SRC, reason="set TINYDEPLOY_CHIRALE_SRC to a Chirale_TensorFlowLite 2.0.0 "
                            "library folder (with library.properties) to compile against it")


@needs_chirale
def test_fixture_matches_the_real_chirale_tree() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import extract_tflm_facts as ex
    finally:
        sys.path.pop(0)
    facts = ex.extract(Path(str(CHIRALE_SRC)), "chirale-2.0.0", date="2023-01")
    want = FACTS["chirale-2.0.0"]
    for key in ("name", "version", "architectures", "main_header", "headers", "kernels",
                "optimized_kernels", "interpreter", "schema_version_macro", "resolver"):
        assert facts[key] == want[key], key


@needs_chirale
@pytest.mark.parametrize("compiler", ["g++", "arm-none-eabi-g++"])
def test_generated_firmware_compiles_against_the_real_chirale_tree(tmp_path: Path,
                                                                   compiler: str) -> None:
    if not shutil.which(compiler):
        pytest.skip(f"{compiler} not installed")
    src_root = Path(str(CHIRALE_SRC)) / "src"
    res = render.generate(DATA / "ds_cnn_kws.tflite", tmp_path / "fw", boards=MCU, arena=40000)
    src = _lib_src(tmp_path)
    main_cpp = tmp_path / "fw" / "src" / "tinydeploy" / "main.cpp"
    cxx = [compiler, *CXX[1:]] + (["-mcpu=cortex-m4", "-mthumb"] if "arm" in compiler else [])
    arduino = tmp_path / "arduino"  # only Arduino.h from the stubs: TFLM is the real one
    arduino.mkdir()
    shutil.copy(STUBS.parent / "arduino_host" / "Arduino.h", arduino)
    (arduino / "Wire.h").write_text("/* stand-in: the library's peripherals.h includes it */\n")
    # the library's own headers as system headers: -Werror applies to the generated code only;
    # ARDUINO as every Arduino core defines it (the library's main header requires it)
    real = [*cxx, "-DARDUINO=10819", f"-isystem{src_root}", f"-I{src}", f"-I{arduino}"]
    for board in MCU:
        proc = subprocess.run([*real, f"-D{BOARDS[board].define}", "-x", "c++",
                               str(src / "td_tflm_app.cpp"), str(main_cpp),
                               str(src / "td_tflm_fc.cpp")],  # its FULLY_CONNECTED override
                              cwd=src, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, (board, proc.stderr[-3000:])
    sketch = res.sketch_dir
    assert sketch is not None
    proc = subprocess.run([*real[:-2], f"-I{sketch / 'src'}", f"-I{arduino}", "-x", "c++",
                           str(sketch / "examples" / "validate" / "validate.ino"),
                           str(sketch / "src" / "td_tflm_app.cpp")],
                          cwd=sketch, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
