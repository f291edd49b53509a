"""Firmware rendering: op resolver, budget, formats, atomic output, syntax of the C++."""

from __future__ import annotations

import configparser
import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from models import GENERATED
from tflm_standins import board_standins

from tinydeploy import render
from tinydeploy.boards import BOARDS, KIB, get_board
from tinydeploy.cli import main
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import OpFacts, load
from tinydeploy.ops import TFLM_OPS
from tinydeploy.tflm_overrides import OVERRIDES, per_channel_fc_layers

DATA = Path(__file__).parent / "data"
STUBS = Path(__file__).parent / "stubs"
GROUND = json.loads((DATA / "ground_truth.json").read_text())
MODELS = GENERATED  # the zoo: tests/test_zoo*.py
MCU = ["nano33ble", "esp32-s3", "rpipico", "nucleo_f446re", "teensy41"]
# stand-ins written from the boards' TFLM library facts (tests/tflm_standins.py), then stubs
CXX = ["g++", "-fsyntax-only", "-std=c++17", "-Wall", "-Wextra", "-Werror",
       f"-I{board_standins()}", f"-I{STUBS}"]
CC = ["gcc", "-fsyntax-only", "-std=c99", "-Wall", "-Wextra", "-Werror"]


def gen(tmp_path: Path, model: str = "digits_cnn", out: str = "fw", **kw: object):
    kw.setdefault("boards", ["nano33ble"])
    kw.setdefault("arena", GROUND[model]["min_arena_cm4"] + 1024)
    return render.generate(DATA / f"{model}.tflite", tmp_path / out, **kw)


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


# --- op table and estimates ------------------------------------------------------------
def test_op_table_covers_reference_models() -> None:
    for name in MODELS:
        facts = load(DATA / f"{name}.tflite")
        assert facts.op_names == GROUND[name]["ops"]
        for op in facts.op_names:
            assert op in TFLM_OPS and TFLM_OPS[op].int8, (name, op)


def test_code_estimate_not_below_real_cortex_m4_builds() -> None:
    for name, g in ((n, GROUND[n]) for n in GENERATED):
        real = g["cm4_text"] - g["model_bytes"]
        est = render.tflm_code_estimate(g["ops"])
        assert real <= est <= 1.35 * real, (name, real, est)


# --- the generated C++ compiles against the stand-in headers ------------------------------
def _compile(files: list[Path], cwd: Path, defines: list[str] = (),
             extra: list[str] = ()) -> None:
    cpp = [str(f) for f in files if f.suffix in (".cpp", ".ino")]
    args = [*CXX, f"-I{cwd}", *[f"-D{d}" for d in defines], *extra, "-x", "c++", *cpp]
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for c in (f for f in files if f.suffix == ".c"):
        proc = subprocess.run([*CC, str(c)], cwd=cwd, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("model", MODELS)
def test_generated_cpp_compiles_for_every_board(tmp_path: Path, model: str) -> None:
    res = gen(tmp_path, model, boards=MCU)
    src = tmp_path / "fw" / "lib" / "fw" / "src"  # the library inside the PlatformIO project
    sources = sorted(p for p in src.iterdir() if p.suffix in (".cpp", ".c"))
    override = {f for f in OVERRIDES[0].files if f.endswith((".c", ".cpp"))} \
        if per_channel_fc_layers(load(DATA / f"{model}.tflite")) else set()
    assert {p.name for p in sources} == {"td_tflm_app.cpp", "model_data.cpp", "td_app.c",
                                         "td_app_arduino.cpp", "td_protocol.c",
                                         "td_arduino.cpp", *override}
    main_cpp = tmp_path / "fw" / "src" / "tinydeploy" / "main.cpp"
    _compile([*sources, main_cpp], src, [BOARDS["nano33ble"].define, "TD_SERIAL_BAUD=115200"])
    _compile([main_cpp], src, ["TD_EXAMPLE_BASIC"])
    for board in MCU[1:]:  # every board's branch of model_settings.h
        _compile([src / "td_tflm_app.cpp"], src, [BOARDS[board].define])
    # the Arduino library: no -D from the IDE, the core's macro (or nothing) picks the board
    lib = res.sketch_dir
    assert lib is not None
    ino = [lib / "src" / "td_tflm_app.cpp", lib / "src" / "td_app.c",
           lib / "src" / "td_app_arduino.cpp"]
    _compile(ino, lib / "src", [])
    _compile(ino[1:], lib / "src", ["ARDUINO=10819"])  # the default clock: micros()
    _compile(ino[:1], lib / "src", [BOARDS["esp32-s3"].arduino_macros[0]])
    for example in ("basic", "validate"):  # the IDE adds #include <Arduino.h> to a .ino
        _compile([lib / "examples" / example / f"{example}.ino"], lib / "src", [],
                 ["-include", "Arduino.h"])


def test_odd_tensor_names_stay_inside_comments(tmp_path: Path) -> None:
    """Tensor names come from the model file: comment delimiters, line splices and
    newlines in them must not break the generated C++."""
    import flatbuffers

    from tinydeploy.tflm_py import schema

    data = (DATA / "sine_mlp.tflite").read_bytes()
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytearray(data), 0))
    sub = m.subgraphs[0]
    sub.tensors[sub.inputs[0]].name = b'in */ put "\\ \nx'
    sub.tensors[sub.outputs[0]].name = "out ??/ ä\\".encode()
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    model = tmp_path / "odd*name\\.tflite"
    model.write_bytes(bytes(b.Output()))
    res = render.generate(model, tmp_path / "fw", boards=["nano33ble"], arena=4096)
    src = tmp_path / "fw" / "lib" / "fw" / "src"
    main_cpp = tmp_path / "fw" / "src" / "tinydeploy" / "main.cpp"
    _compile([src / "td_tflm_app.cpp", src / "td_app.c", main_cpp], src,
             [BOARDS["nano33ble"].define])
    assert res.sketch_dir is not None
    _compile([res.sketch_dir / "src" / "td_tflm_app.cpp"], res.sketch_dir / "src", [])


def test_cycle_counter_per_board(tmp_path: Path) -> None:
    gen(tmp_path, "sine_mlp", boards=MCU, fmt="platformio")
    settings = (tmp_path / "fw" / "lib" / "fw" / "src" / "model_settings.h").read_text()
    main_cpp = (tmp_path / "fw" / "lib" / "fw" / "src" / "td_tflm_app.cpp").read_text()
    for board in MCU:
        block = settings.split(f"defined({BOARDS[board].define})")[1].split("#elif")[0]
        kind = {"dwt": "TD_CYCLES_DWT", "ccount": "TD_CYCLES_CCOUNT", "none": "TD_CYCLES_NONE"}
        assert f"TD_CYCLE_COUNTER {kind[BOARDS[board].cycle_counter]}" in block
        assert f'TD_BOARD_ID "{board}"' in block
    assert "0xE0001004u" in main_cpp and "ESP.getCycleCount()" in main_cpp


# --- content ---------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["sine_mlp", "tanh_mlp", "ds_cnn_kws", "concat_branches"])
def test_resolver_has_exactly_the_models_ops(tmp_path: Path, model: str) -> None:
    res = gen(tmp_path, model, fmt="platformio")
    text = (tmp_path / "fw" / "lib" / "fw" / "src" / "td_tflm_app.cpp").read_text()
    calls = re.findall(r"resolver\.(Add\w+)\(\)", text)
    ops = GROUND[model]["ops"]
    assert calls == [TFLM_OPS[o].resolver for o in ops]
    settings = (tmp_path / "fw" / "lib" / "fw" / "src" / "model_settings.h").read_text()
    assert re.search(rf"#define TD_NUM_OPS {len(ops)}\n", settings)
    assert "MicroMutableOpResolver<TD_NUM_OPS>" in text
    assert "alignas(16) static uint8_t tensor_arena[kArenaSize]" in text
    assert "model->version() != TFLITE_SCHEMA_VERSION" in text
    assert "arena_used_bytes()" in text
    assert f"#define TD_ARENA_SIZE {res.arena.size}u" in settings


def test_settings_carry_facts(tmp_path: Path) -> None:
    facts = load(DATA / "accel_cnn1d.tflite")
    gen(tmp_path, "accel_cnn1d", fmt="arduino")
    settings = (tmp_path / "fw" / "fw" / "src" / "model_settings.h").read_text()
    sha = re.findall(r"0x([0-9a-f]{2})", settings.split("TD_MODEL_SHA256")[1].split("/*")[0])
    assert "".join(sha) == facts.sha256
    g = GROUND["accel_cnn1d"]
    assert "#define TD_INPUT_DIMS " + ", ".join(map(str, g["input_shape"])) in settings
    assert f"#define TD_OUTPUT_ZERO_POINT {g['output_zero_point']}\n" in settings
    scale = float(re.search(r"TD_INPUT_SCALE (\S+)f", settings).group(1))
    assert scale == pytest.approx(g["input_scale"], rel=1e-7)
    assert '#define TD_FIRMWARE_VERSION "tinydeploy ' in settings


def test_arena_auto_adds_documented_margin(tmp_path: Path, monkeypatch) -> None:
    from tinydeploy.arena import plan as arena_plan
    from tinydeploy.arena.margin import UNMODELLED_MARGIN_MIN

    facts = load(DATA / "residual_cnn.tflite")
    # a CMSIS-NN board (Chirale): the modelled library's prediction + 1 %
    monkeypatch.setitem(arena_plan._PREDICTIONS, (facts.sha256, "cmsis-nn"), 15000)
    res = render.generate(facts, tmp_path / "fw", boards=["nucleo_f446re"], arena="auto")
    assert res.arena.size == 15150 and res.arena.predicted == 15000
    assert res.arena.margin == 150 and res.arena.flavour == "cmsis-nn"
    settings = (tmp_path / "fw" / "lib" / "fw" / "src" / "model_settings.h").read_text()
    assert "#define TD_ARENA_PREDICTED 15000u" in settings
    assert "#define TD_ARENA_MARGIN 150u" in settings
    readme = (tmp_path / "fw" / "README.md").read_text()
    assert "**15150 bytes**" in readme and "1 % margin" in readme
    # a library the replay does not model (ESP-NN): 25 %, at least 2 KiB, rounded up to 16
    monkeypatch.setitem(arena_plan._PREDICTIONS, (facts.sha256, "reference"), 100)
    esp_nn = dataclasses.replace(get_board("esp32-s3"), tflm_library="tflm_esp32-2.0.0")
    res = render.generate(facts, tmp_path / "fw2", boards=[esp_nn], arena="auto")
    assert res.arena.size == 100 + UNMODELLED_MARGIN_MIN + 12
    # several boards: the largest figure
    res = render.generate(facts, tmp_path / "fw3", boards=["nucleo_f446re", esp_nn],
                          arena="auto")
    assert res.arena.size == 15150


def test_arena_auto_uses_the_cortex_m_prediction(tmp_path: Path) -> None:
    from tinydeploy.arena.predict import predict_flavour

    res = render.generate(DATA / "sine_mlp.tflite", tmp_path / "fw", boards=["nano33ble"])
    pred = predict_flavour(DATA / "sine_mlp.tflite", "cmsis-nn")  # Chirale: CMSIS-NN
    assert res.arena.predicted == pred and res.arena.size == pred + -(-pred // 100)
    g = GROUND["sine_mlp"]  # upstream TFLM, reference kernels (no board's library)
    plan = render.plan_arena(load(DATA / "sine_mlp.tflite"), "auto")
    assert plan.predicted == g["min_arena_cm4"] and plan.size >= g["min_arena_cm4"]


# --- formats ---------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["arduino", "platformio", "both"])
def test_format_choices(tmp_path: Path, fmt: str) -> None:
    res = gen(tmp_path, "sine_mlp", out="My Sketch", fmt=fmt)
    out = tmp_path / "My Sketch"
    has_pio = ((out / "platformio.ini").is_file()
               and (out / "src" / "tinydeploy" / "main.cpp").is_file()
               and (out / "src" / "main.cpp").is_file())  # validation server, app skeleton
    sketch = out / "My_Sketch"
    has_ino = (sketch / "library.properties").is_file()
    assert has_pio == (fmt != "arduino") and has_ino == (fmt != "platformio")
    assert (res.platformio_dir is not None) == has_pio and (res.sketch_dir is not None) == has_ino
    if has_ino:
        names = {p.name for p in (sketch / "src").iterdir()}
        assert names == {"My_Sketch.h", "td_app.h", "td_app.c", "td_app_arduino.cpp",
                         "td_sample.h",
                         "td_tflm_app.cpp", "td_tflm_app.h", "model_settings.h",
                         "model_data.h", "model_data.cpp", "td_protocol.h", "td_protocol.c",
                         "td_arduino.h", "td_arduino.cpp",
                         # sine_mlp's per-channel Dense: the FULLY_CONNECTED override
                         "td_tflm_overrides.h", *OVERRIDES[0].files}
        ino = (sketch / "examples" / "validate" / "validate.ino").read_text()
        assert "td_app_setup();" in ino and "td_app_loop();" in ino
        assert "td_run_float(" in (sketch / "examples" / "basic" / "basic.ino").read_text()
        assert "depends=Chirale_TensorFLowLite" in (sketch / "library.properties").read_text()
    assert (out / "README.md").is_file()
    assert all(f.is_file() for f in res.files)
    assert res.summary().startswith("generated tflm firmware for nano33ble")


def test_platformio_ini_parses_with_one_env_per_board(tmp_path: Path) -> None:
    boards = ["teensy41", "esp32-s3", "rpipico"]
    gen(tmp_path, "digits_cnn", boards=boards, fmt="platformio")
    ini = configparser.ConfigParser()
    ini.read(tmp_path / "fw" / "platformio.ini")
    envs = [s[4:] for s in ini.sections() if s.startswith("env:")]
    assert envs == [e for b in boards for e in (b, f"{b}_app", f"{b}_basic")]
    assert [e.strip() for e in ini["platformio"]["default_envs"].split(",")] == \
        [f"{b}_app" for b in boards]  # the user's application; tinydeploy flashes env:BOARD
    for name in boards:  # the server builds src/tinydeploy/ only, the app everything else
        assert ini[f"env:{name}"]["build_src_filter"] == "-<*> +<tinydeploy/>"
        assert ini[f"env:{name}_app"]["build_src_filter"] == "+<*> -<tinydeploy/>"
    for name in boards:
        env, b = ini[f"env:{name}"], BOARDS[name]
        assert env["platform"] == b.pio_platform and env["board"] == b.pio_board
        assert env["framework"] == "arduino"
        assert env["lib_deps"].strip() == b.tflm_lib_deps
        assert int(env["monitor_speed"]) == b.monitor_speed
        assert f"-D {b.define}" in env["build_flags"]


def test_readme_names_the_library_to_install(tmp_path: Path) -> None:
    gen(tmp_path, "sine_mlp", boards=["esp32-s3", "nano33ble"], fmt="arduino")
    readme = (tmp_path / "fw" / "README.md").read_text()
    assert 'arduino-cli lib install "Chirale_TensorFLowLite@2.0.0"' in readme
    assert "TensorFlowLite_ESP32" not in readme
    assert "platformio.ini" not in readme.split("## Boards")[0]


# --- names -----------------------------------------------------------------------------
def test_names_are_sanitized(tmp_path: Path) -> None:
    res = gen(tmp_path, "sine_mlp", out="3 my-model.v2", fmt="arduino")
    assert res.sketch == "v3_my_model_v2"
    sketch = tmp_path / "3 my-model.v2" / "v3_my_model_v2"
    assert (sketch / "src" / "v3_my_model_v2.h").is_file()
    res = gen(tmp_path, "sine_mlp", out="o", fmt="arduino", name="int")
    assert res.sketch == "int_" and (tmp_path / "o" / "int_" / "src" / "int_.h").is_file()
    res = gen(tmp_path, "sine_mlp", out="src")
    assert res.sketch == "src_sketch"
    assert (tmp_path / "src" / "src" / "tinydeploy" / "main.cpp").is_file()


# --- refusals leave nothing behind ------------------------------------------------------
def test_arena_larger_than_ram_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TinyDeployError) as exc:
        gen(tmp_path, "sine_mlp", boards=["nucleo_f446re"], arena=200 * KIB)
    err = exc.value
    assert err.code == "does_not_fit" and err.exit_code == 4
    assert "nucleo_f446re" in str(err) and str(200 * KIB) in str(err)
    assert str(BOARDS["nucleo_f446re"].ram_bytes) in str(err)
    assert leftovers(tmp_path) == []


def test_model_too_big_for_small_board_flash(tmp_path: Path) -> None:
    tiny = dataclasses.replace(BOARDS["nucleo_f446re"], id="tiny", flash_bytes=96 * KIB)
    with pytest.raises(TinyDeployError) as exc:
        gen(tmp_path, "ds_cnn_kws", boards=[tiny])
    msg = str(exc.value)
    assert exc.value.code == "does_not_fit" and "flash" in msg and str(96 * KIB) in msg
    assert str(GROUND["ds_cnn_kws"]["model_bytes"]) in msg
    assert leftovers(tmp_path) == []
    # the same model fits the real board
    assert gen(tmp_path, "ds_cnn_kws", boards=["nucleo_f446re"]).budgets[0].fits


def test_code_in_ram_counts_against_ram(tmp_path: Path) -> None:
    facts = load(DATA / "ds_cnn_kws.tflite")
    t = render.budget(facts, BOARDS["teensy41"], 30000)
    plain = render.budget(facts, dataclasses.replace(BOARDS["teensy41"], code_in_ram=False),
                          30000)
    assert t.ram_used - plain.ram_used == facts.size_bytes + t.code_bytes


def test_multi_board_refuses_if_any_board_does_not_fit(tmp_path: Path) -> None:
    with pytest.raises(TinyDeployError) as exc:
        gen(tmp_path, "sine_mlp", boards=["teensy41", "nucleo_f446re"], arena=120 * KIB)
    assert "nucleo_f446re" in str(exc.value)
    assert leftovers(tmp_path) == []


def test_unsupported_op_refused_before_writing(tmp_path: Path) -> None:
    facts = load(DATA / "sine_mlp.tflite")
    bad = dataclasses.replace(facts, ops=[*facts.ops, OpFacts("CUSTOM:MyOp", 1, 1)])
    with pytest.raises(TinyDeployError) as exc:
        render.generate(bad, tmp_path / "fw", boards=["nano33ble"], arena=4096)
    assert exc.value.code == "unsupported_op" and "CUSTOM:MyOp" in str(exc.value)
    assert leftovers(tmp_path) == []


def _uint8_io(model: str) -> bytes:
    """The reference model with uint8 input/output tensors (a model TFLM cannot run)."""
    import copy

    import flatbuffers

    from tinydeploy.tflm_py import schema

    m = copy.deepcopy(load(DATA / f"{model}.tflite").model)
    sub = m.subgraphs[0]
    for i in [*sub.inputs, *sub.outputs]:
        sub.tensors[i].type = schema.TensorType.UINT8
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_model_the_guard_rejects_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(TinyDeployError) as exc:
        render.generate(_uint8_io("sine_mlp"), tmp_path / "fw", boards=["nano33ble"],
                        arena=4096)
    assert exc.value.code == "model_rejected" and "uint8" in str(exc.value)
    assert leftovers(tmp_path) == []


def test_unknown_board_and_bad_arguments(tmp_path: Path) -> None:
    for kw, code in [({"boards": ["nano33ble", "arduino_uno"]}, "unknown_board"),
                     ({"boards": ["sim"]}, "bad_argument"),
                     ({"boards": [" "]}, "bad_argument"),
                     ({"fmt": "zip"}, "bad_argument"),
                     ({"runtime": "onnx"}, "bad_argument"),
                     ({"arena": "lots"}, "bad_argument"),
                     ({"arena": 0}, "bad_argument")]:
        with pytest.raises(TinyDeployError) as exc:
            gen(tmp_path, "sine_mlp", **kw)
        assert exc.value.code == code, kw
    assert leftovers(tmp_path) == []


def test_error_while_rendering_removes_the_temp_folder(tmp_path: Path, monkeypatch) -> None:
    def boom(*_a: object) -> list[Path]:
        raise TinyDeployError("tool_missing", tool="firmware source", fix="reinstall")

    from tinydeploy import library

    monkeypatch.setattr(library, "copy_firmware", boom)
    with pytest.raises(TinyDeployError):
        gen(tmp_path, "sine_mlp", out="deep/er/fw")
    assert leftovers(tmp_path) == []


def test_regenerate_replaces_generated_files_only(tmp_path: Path) -> None:
    gen(tmp_path, "sine_mlp", boards=["nano33ble"])
    out = tmp_path / "fw"
    (out / "notes.txt").write_text("mine")
    (out / "src" / "mine.cpp").write_text("mine")
    (out / "lib" / "fw" / "src" / "mine.cpp").write_text("mine")
    gen(tmp_path, "tanh_mlp", boards=["rpipico"], fmt="platformio")
    assert (out / "notes.txt").read_text() == "mine"  # files generate did not write stay
    assert (out / "src" / "mine.cpp").read_text() == "mine"  # (more in test_owned.py)
    assert (out / "lib" / "fw" / "src" / "mine.cpp").read_text() == "mine"
    assert not (out / "fw").exists()  # the sketch of the earlier format is removed
    assert "[env:rpipico]" in (out / "platformio.ini").read_text()
    assert "AddTanh" in (out / "lib" / "fw" / "src" / "td_tflm_app.cpp").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["fw"]  # no temp folder left
    (tmp_path / "file").write_text("x")
    with pytest.raises(TinyDeployError) as exc:
        gen(tmp_path, "sine_mlp", out="file")
    assert exc.value.code == "output_exists"


# --- CLI and inspect -------------------------------------------------------------------
def test_cli_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli fw"
    rc = main(["generate", str(DATA / "pad_gap_cnn.tflite"), "--out", str(out),
               "--board", "nano33ble,teensy41", "--arena", "8192", "--format", "both"])
    assert rc == 0
    assert "nano33ble, teensy41" in capsys.readouterr().out
    assert (out / "platformio.ini").is_file() and (out / "cli_fw" / "src" / "cli_fw.h").is_file()
    rc = main(["generate", str(DATA / "pad_gap_cnn.tflite"), "--out", str(tmp_path / "x"),
               "--board", "uno", "--arena", "8192"])
    assert rc == 2 and not (tmp_path / "x").exists()
    rc = main(["generate", str(DATA / "pad_gap_cnn.tflite"), "--out", str(tmp_path / "y"),
               "--board", "rpipico", "--arena", str(1 << 20)])
    assert rc == 4 and not (tmp_path / "y").exists()


def test_describe_lists_facts(capsys: pytest.CaptureFixture[str]) -> None:
    facts = load(DATA / "concat_branches.tflite")
    text = render.describe(facts)
    for op in facts.op_names:
        assert op in text and TFLM_OPS[op].resolver in text
    assert facts.sha256 in text and str(list(facts.inputs[0].shape)) in text
    assert main(["inspect", str(DATA / "concat_branches.tflite")]) == 0
    assert "CONCATENATION" in capsys.readouterr().out


def test_stubs_are_our_own() -> None:
    for p in STUBS.rglob("*"):
        if p.is_file():
            assert "TensorFlow Authors" not in p.read_text()


def test_toolchain_present() -> None:
    assert shutil.which("g++") and shutil.which("gcc")


def test_runtime_c_delegates_to_the_c_runtime(tmp_path: Path) -> None:
    res = render.generate(DATA / "sine_mlp.tflite", tmp_path / "c", boards=["native"],
                          runtime="c")
    assert (tmp_path / "c" / "td_model.c").is_file() and res.summary()
    assert not (tmp_path / "c" / "platformio.ini").exists()
    with pytest.raises(TinyDeployError) as exc:
        render.generate(DATA / "sine_mlp.tflite", tmp_path / "s", boards=["sim"], runtime="c")
    assert exc.value.code == "bad_argument" and not (tmp_path / "s").exists()
