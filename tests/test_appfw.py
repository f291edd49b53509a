"""Application API in generated firmware (td_begin/td_run_float/td_run_int8, labels), the
Arduino library with its basic/validate examples, and the C runtime on real boards
(library + PlatformIO project, budget check, objects built with arm-none-eabi-gcc)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from tflm_standins import board_standins

from tinydeploy import render
from tinydeploy.boards import BOARDS, KIB
from tinydeploy.cli import main
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load
from tinydeploy.hostref import dequantize
from tinydeploy.hostref_native import reference_model
from tinydeploy.library import c_code_estimate

DATA = Path(__file__).parent / "data"
HOST = Path(__file__).parent / "arduino_host"
WARN = ["-Wall", "-Wextra", "-Werror"]
# the -mcpu (and float ABI) each Arm board's core compiles with
ARM = {
    "nano33ble": ["-mcpu=cortex-m4", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
    "rpipico": ["-mcpu=cortex-m0plus"],
    "nucleo_f446re": ["-mcpu=cortex-m4"],
    "teensy41": ["-mcpu=cortex-m7"],
}
DIGITS = [str(d) for d in range(10)]


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd[:3])}...\n{proc.stderr[-3000:]}"


def _sample_npz(tmp_path: Path, model: str, index: int) -> tuple[Path, np.ndarray]:
    """x_test = one stored int8 input of ``model`` dequantized to float; its int8 bytes."""
    facts = load(DATA / f"{model}.tflite")
    q = np.load(DATA / f"{model}.inputs.npy")[index:index + 1]
    x = dequantize(q, facts.inputs[0])
    path = tmp_path / f"{model}_{index}.npz"
    np.savez(path, x_test=x, y_test=np.zeros(1, np.float32))
    return path, q


def _host_build(lib: Path, work: Path, example: str = "basic") -> Path:
    """Compile the Arduino library ``lib`` and one of its examples with the host gcc/g++
    against the Arduino stand-in (Serial = stdout) and link a program."""
    work.mkdir(parents=True, exist_ok=True)
    src = lib / "src"
    objs = []
    jobs = [(f, ["gcc", "-std=c99"]) for f in sorted(src.glob("*.c"))]
    jobs += [(f, ["g++", "-std=c++17"]) for f in [*sorted(src.glob("*.cpp")),
                                                  HOST / "arduino_host.cpp"]]
    jobs.append((lib / "examples" / example / f"{example}.ino",
                 ["g++", "-std=c++17", "-include", "Arduino.h", "-x", "c++"]))
    for f, cc in jobs:
        obj = work / (f.name + ".o")
        _run([*cc, *WARN, "-O1", f"-I{HOST}", f"-I{src}", "-c", str(f), "-o", str(obj)])
        objs.append(str(obj))
    exe = work / example
    _run(["g++", *objs, "-o", str(exe)])
    return exe


def _parse(text: str) -> dict[str, str]:
    m = re.search(r"top: (-?\d+) label: (.*) score: (\S+) time_us: (\d+)", text)
    assert m, text
    outputs = re.search(r"outputs:(.*)", text)
    assert outputs, text
    return {"top": m.group(1), "label": m.group(2), "score": m.group(3),
            "outputs": outputs.group(1).split()}


# --- the basic example on the host ----------------------------------------------------------
@pytest.mark.parametrize("runtime_index", [13])
def test_basic_example_runs_natively_on_the_c_runtime(tmp_path: Path, runtime_index: int,
                                                      ) -> None:
    """The C-runtime library's basic example, compiled with the host compiler, prints the
    class the host TFLM reference predicts for the stored sample, with its label."""
    data, q = _sample_npz(tmp_path, "digits_cnn", runtime_index)
    labels = [f"digit {d}" for d in range(10)]
    res = render.generate(DATA / "digits_cnn.tflite", tmp_path / "fw", boards=["nano33ble"],
                          runtime="c", fmt="arduino", labels=labels, data=data)
    assert res.sketch_dir is not None
    out = subprocess.run([str(_host_build(res.sketch_dir, tmp_path / "obj"))],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    got = _parse(out.stdout)
    facts = load(DATA / "digits_cnn.tflite")
    host = reference_model(facts).predict_one(q[0])
    want = int(np.argmax(host))
    assert want != 0 or runtime_index == 0  # a broken "top = 0" cannot pass
    assert int(got["top"]) == want and got["label"] == labels[want]
    deq = dequantize(np.asarray(host).reshape(-1), facts.outputs[0])
    assert np.allclose([float(v) for v in got["outputs"]], deq, atol=6e-5)


def test_basic_example_int8_and_float_agree(tmp_path: Path) -> None:
    """td_run_int8 on the quantized sample and td_run_float on its float values give the
    same result (the float path quantizes with the input's scale and zero point)."""
    data, q = _sample_npz(tmp_path, "digits_cnn", 5)
    res = render.generate(DATA / "digits_cnn.tflite", tmp_path / "fw", boards=["rpipico"],
                          runtime="c", fmt="arduino", data=data)
    assert res.sketch_dir is not None
    ex = res.sketch_dir / "examples" / "both"
    ex.mkdir()
    body = ", ".join(str(int(v)) for v in q.reshape(-1))
    (ex / "both.ino").write_text(
        '#include <fw.h>\n#include "td_sample.h"\n'
        f"static const int8_t kQ[TD_APP_INPUT_BYTES] = {{{body}}};\n"
        "void setup() {\n  td_result_t a, b;\n"
        "  if (td_run_int8(kQ, &a) != TD_APP_OK || td_run_float(td_sample_input, &b) != 0)"
        " return;\n  int same = a.top == b.top;\n"
        "  for (unsigned i = 0; i < TD_APP_OUTPUT_COUNT; ++i)\n"
        "    same &= a.outputs[i] == b.outputs[i];\n"
        '  Serial.print("same: ");\n  Serial.println(same);\n'
        '  Serial.print("null: ");\n  Serial.println(td_run_float(0, &a));\n}\n'
        "void loop() {}\n")
    out = subprocess.run([str(_host_build(res.sketch_dir, tmp_path / "obj", "both"))],
                         capture_output=True, text=True, timeout=30)
    assert "same: 1" in out.stdout and "null: -2" in out.stdout, out.stdout


# --- labels -------------------------------------------------------------------------------
def test_labels_reach_the_header(tmp_path: Path) -> None:
    names = ["zero", "one", "two", 'th"ree', "four", "five", "six", "seven", "eight", "nine"]
    for runtime in ("tflm", "c"):
        out = tmp_path / runtime
        render.generate(DATA / "digits_cnn.tflite", out, boards=["nano33ble"], arena=8192,
                        runtime=runtime, fmt="arduino", labels=",".join(names))
        api = (out / runtime / "src" / "td_app.c").read_text()
        assert '"zero",' in api and '"th\\"ree",' in api and '"nine",' in api
        assert "#define TD_APP_NUM_LABELS 10u" in (out / runtime / "src" / "td_app.h").read_text()
    # a labels file, and the labels quantize stores in quantization.json beside the model
    (tmp_path / "labels.txt").write_text("\n".join(names) + "\n")
    render.generate(DATA / "digits_cnn.tflite", tmp_path / "f", boards=["rpipico"],
                    runtime="c", fmt="arduino", labels=tmp_path / "labels.txt")
    assert '"eight",' in (tmp_path / "f" / "f" / "src" / "td_app.c").read_text()
    qdir = tmp_path / "q"
    qdir.mkdir()
    shutil.copy(DATA / "digits_cnn.tflite", qdir / "model_int8.tflite")
    (qdir / "quantization.json").write_text(json.dumps({"task": "classification",
                                                        "labels": DIGITS[::-1]}))
    render.generate(qdir / "model_int8.tflite", tmp_path / "g", boards=["rpipico"],
                    runtime="c", fmt="arduino")
    api = (tmp_path / "g" / "g" / "src" / "td_app.c").read_text()
    assert api.index('"9",') < api.index('"0",')
    # a regressor gets none; a wrong count is refused before anything is written
    render.generate(DATA / "sine_mlp.tflite", tmp_path / "s", boards=["rpipico"],
                    runtime="c", fmt="arduino")
    assert "#define TD_APP_NUM_LABELS 0u" in (tmp_path / "s" / "s" / "src" / "td_app.h").read_text()
    with pytest.raises(TinyDeployError) as exc:
        render.generate(DATA / "digits_cnn.tflite", tmp_path / "bad", boards=["rpipico"],
                        runtime="c", labels="a,b,c")
    assert exc.value.code == "bad_argument" and "3 labels for 10" in str(exc.value)
    assert not (tmp_path / "bad").exists()


def test_trained_digits_end_to_end(digits_run, tmp_path: Path) -> None:
    """train -> quantize (labels into quantization.json) -> generate (labels and data.npz
    found beside the model) -> the basic example, built on the host, prints the host
    reference's class for x_test[0] and the label the data gives for it."""
    report = json.loads(Path(digits_run.report_json).read_text())
    assert report["labels"] == DIGITS
    model = Path(digits_run.int8_tflite)
    assert (model.parent / "data.npz").is_file()  # train and quantize share the folder
    res = render.generate(model, tmp_path / "fw", boards=["nano33ble"], runtime="c",
                          fmt="arduino")
    assert res.sketch_dir is not None
    sample = (res.sketch_dir / "src" / "td_sample.h").read_text()
    facts = load(model)
    with np.load(digits_run.data_npz) as npz:
        x, y = npz["x_test"][:1], int(npz["y_test"][0])
    assert f'td_sample_expected = "{y}"' in sample
    out = subprocess.run([str(_host_build(res.sketch_dir, tmp_path / "obj"))],
                         capture_output=True, text=True, timeout=30)
    got = _parse(out.stdout)
    from tinydeploy.hostref import quantize_input

    want = int(np.argmax(reference_model(facts).predict_one(quantize_input(x, facts.inputs[0])[0])))
    assert int(got["top"]) == want and got["label"] == str(want)
    assert f"expected: {y}" in out.stdout


# --- the C runtime on real boards -------------------------------------------------------------
@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                    reason="arm-none-eabi-gcc not installed (scripts/setup installs it)")
@pytest.mark.parametrize("board", list(ARM))
def test_c_runtime_library_compiles_to_arm_objects(tmp_path: Path, board: str) -> None:
    """Library + PlatformIO project for an Arm board: every source, both examples and
    main.cpp (validate and basic) compile warning-free with the board's -mcpu; the C code
    estimate of the budget is not below the objects' real .text."""
    res = render.generate(DATA / "digits_cnn.tflite", tmp_path / "fw", boards=[board],
                          runtime="c", fmt="both")
    lib, pio_lib = tmp_path / "fw" / "fw", tmp_path / "fw" / "lib" / "fw"
    assert sorted(p.relative_to(lib) for p in lib.rglob("*")) == \
        sorted(p.relative_to(pio_lib) for p in pio_lib.rglob("*"))
    assert "lib_deps" not in (tmp_path / "fw" / "platformio.ini").read_text()
    cpu = [*ARM[board], "-mthumb", "-Os", "-ffunction-sections", "-fdata-sections", *WARN,
           f"-D{BOARDS[board].define}", f"-I{HOST}", f"-I{lib / 'src'}"]
    cxx = ["arm-none-eabi-g++", *cpu, "-std=gnu++17", "-fno-exceptions", "-fno-rtti"]
    jobs = [["arm-none-eabi-gcc", *cpu, "-std=c99", "-c", str(f)]
            for f in sorted((lib / "src").glob("*.c"))]
    jobs += [[*cxx, "-c", str(f)] for f in sorted((lib / "src").glob("*.cpp"))]
    jobs += [[*cxx, "-include", "Arduino.h", "-x", "c++", "-c", str(f)]
             for f in sorted(lib.glob("examples/*/*.ino"))]
    main_cpp = tmp_path / "fw" / "src" / "tinydeploy" / "main.cpp"
    jobs += [[*cxx, *d, "-c", str(main_cpp), "-o", f"main{i}.o"]
             for i, d in enumerate(([], ["-DTD_EXAMPLE_BASIC"]))]
    for cmd in jobs:
        _run(cmd, cwd=tmp_path)
    code = 0
    for obj in tmp_path.glob("*.o"):
        if obj.name in ("td_model.o", "td_sample.o") or obj.name.startswith(("main", "basic")):
            continue
        size = subprocess.run(["arm-none-eabi-size", str(obj)], capture_output=True,
                              text=True, check=True).stdout.splitlines()[1].split()
        code += int(size[0])
    assert len(list(tmp_path.glob("*.o"))) >= 12
    assert code <= c_code_estimate(0) <= 6 * code, code
    assert res.budgets[0].code_bytes > c_code_estimate(0)


def test_esp32_rendered_and_readme_says_which_boards_compile(tmp_path: Path) -> None:
    res = render.generate(DATA / "digits_cnn.tflite", tmp_path / "fw",
                          boards=["esp32-s3", "nano33ble"], runtime="c")
    readme = (tmp_path / "fw" / "README.md").read_text()
    assert "rendered only (no compiler for it in CI): esp32-s3" in readme
    assert "td_run_float(input, &r)" in readme and "#include <fw.h>" in readme
    assert [b.board for b in res.budgets] == ["esp32-s3", "nano33ble"]
    ini = (tmp_path / "fw" / "platformio.ini").read_text()
    assert "[env:esp32-s3]" in ini and "[env:esp32-s3_basic]" in ini


SMALL_M4 = dataclasses.replace(BOARDS["nucleo_f446re"], id="small_m4", flash_bytes=256 * KIB,
                               ram_bytes=48 * KIB)


def test_oversized_model_is_refused_with_numbers(tmp_path: Path) -> None:
    """person_detect (about 300 KB of weights; a 19 KB arena with its patch stage) on a
    256 KiB flash / 48 KiB RAM Cortex-M4: refused on flash; with enough flash and 16 KiB of
    RAM, refused on RAM."""
    with pytest.raises(TinyDeployError) as exc:
        render.generate(DATA / "person_detect.tflite", tmp_path / "a", boards=[SMALL_M4],
                        runtime="c")
    msg = str(exc.value)
    assert exc.value.code == "does_not_fit" and exc.value.exit_code == 4
    assert re.search(r"flash \d+ > 262144 bytes \(weights and parameters \d+ \+ C runtime "
                     r"code ~\d+ \+ core ~\d+\)", msg), msg
    big_flash = dataclasses.replace(SMALL_M4, flash_bytes=2048 * KIB, ram_bytes=16 * KIB)
    with pytest.raises(TinyDeployError) as exc:
        render.generate(DATA / "person_detect.tflite", tmp_path / "a", boards=[big_flash],
                        runtime="c")
    assert re.search(r"RAM \d+ > 16384 bytes \(static arena \d+ \+", str(exc.value))
    assert not (tmp_path / "a").exists()
    # the same model fits the real nucleo_f446re (512 KiB flash, 128 KiB RAM)
    res = render.generate(DATA / "person_detect.tflite", tmp_path / "b",
                          boards=["nucleo_f446re"], runtime="c", fmt="platformio")
    b = res.budgets[0]
    assert b.flash_used <= 512 * KIB and b.ram_used <= 128 * KIB
    assert b.model_bytes > 200_000 and b.arena_bytes == res.arena.size > 0


def test_cli_generate_c_runtime_for_a_board(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cfw"
    rc = main(["generate", str(DATA / "digits_cnn.tflite"), "--out", str(out), "--board",
               "nano33ble,teensy41", "--runtime", "c", "--format", "arduino",
               "--labels", ",".join(DIGITS)])
    assert rc == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "generated c firmware for nano33ble, teensy41" in text and "nano33ble: flash" in text
    assert (out / "cfw" / "library.properties").is_file()
    assert (out / "cfw" / "src" / "td_model.c").is_file()
    assert not (out / "platformio.ini").exists()
    rc = main(["generate", str(DATA / "person_detect.tflite"), "--out", str(tmp_path / "n"),
               "--board", "nano33ble,native", "--runtime", "c"])
    assert rc == 2 and not (tmp_path / "n").exists()


def test_api_handles_several_inputs_each_with_its_quantization(tmp_path: Path) -> None:
    """simple_add_model: two int8 inputs with different scales/zero points. A stand-in
    backend returns input 1's bytes as the output: td_run_float must quantize each input
    with its own parameters at its own offset, and dequantize with the output's."""
    from tinydeploy import library
    from tinydeploy.render import _env

    facts = load(DATA / "simple_add_model.tflite")
    ctx = library.lib_context(facts, "adder", "tflm", None, None)  # the backend: below
    assert [t["offset"] for t in ctx["api_inputs"]] == [0, 16384] and ctx["input_bytes"] == 32768
    ctx.update(version="test", model={"name": "simple_add", "sha256": facts.sha256})
    src = tmp_path / "src"
    library.render_files(_env(), {"td_app.h": "_lib/td_app.h.jinja",
                                  "td_app.c": "_lib/td_app.c.jinja"}, ctx, src)
    (src / "main.cpp").write_text(
        '#include <Arduino.h>\n#include <string.h>\n#include "td_app.h"\n'
        "static uint8_t bin[TD_APP_INPUT_BYTES], bout[TD_APP_OUTPUT_BYTES];\n"
        "int td_backend_begin(void) { return 0; }\n"
        "uint8_t *td_backend_tensor(int output, uint32_t k) {\n"
        "  return output ? bout : bin + 16384u * k;\n}\n"
        "int td_backend_invoke(const uint8_t *in, uint8_t *out) {\n"
        "  if (in != NULL || out != NULL) return 1; /* the API runs on the model's buffers */\n"
        "  memcpy(bout, bin + 16384, TD_APP_OUTPUT_BYTES);\n  return 0;\n}\n"
        "static float x[TD_APP_INPUT_COUNT];\nstatic td_result_t r;\n"
        "void setup() {\n"
        "  for (unsigned i = 0; i < TD_APP_INPUT_COUNT; ++i) x[i] = i < 16384u ? 9.0f : 1.0f;\n"
        "  if (td_run_float(x, &r) != TD_APP_OK) return;\n"
        '  Serial.print("out: ");\n  Serial.println(r.outputs[5], 6);\n'
        '  Serial.print("top: ");\n  Serial.println(r.top);\n}\nvoid loop() {}\n')
    exe = tmp_path / "adder"
    _run(["gcc", "-std=c99", *WARN, f"-I{src}", "-c", str(src / "td_app.c"), "-o",
          str(tmp_path / "td_app.o")])
    _run(["g++", "-std=c++17", *WARN, f"-I{HOST}", f"-I{src}", str(tmp_path / "td_app.o"),
          str(src / "main.cpp"), str(HOST / "arduino_host.cpp"), "-o", str(exe)])
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30).stdout
    i1, o = facts.inputs[1], facts.outputs[0]
    q = np.round(np.float32(1.0) / np.float32(i1.scale)) + i1.zero_point  # 24 + (-1)
    want = (np.float32(q) - o.zero_point) * np.float32(o.scale)
    assert f"out: {want:.6f}" in out and "top: -1" in out, out


def test_project_sources_lists_main_and_library(tmp_path: Path) -> None:
    from tinydeploy.library import project_sources

    render.generate(DATA / "sine_mlp.tflite", tmp_path / "p", boards=["nano33ble"],
                    arena=4096, fmt="platformio")
    (tmp_path / "p" / "src" / "mine.cpp").write_text("int mine;\n")  # the user's app: not built
    sources, includes = project_sources(tmp_path / "p")
    assert {f.name for f in sources} == {"main.cpp", "td_tflm_app.cpp", "td_app.c",
                                         "td_app_arduino.cpp",
                                         "model_data.cpp", "td_protocol.c", "td_arduino.cpp",
                                         # sine_mlp's per-channel Dense on Chirale 2.0.0
                                         "td_tflm_fc.cpp", "td_kernels_fc_plain.c",
                                         "td_kernels_conv_ref.c"}
    assert sources[0] == tmp_path / "p" / "src" / "tinydeploy" / "main.cpp"  # the server
    assert includes == [tmp_path / "p" / "src" / "tinydeploy", tmp_path / "p" / "lib" / "p" / "src"]


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                    reason="arm-none-eabi-gcc not installed (scripts/setup installs it)")
def test_tflm_library_compiles_to_arm_objects_against_stubs(tmp_path: Path) -> None:
    """The TFLM library (API, backend, examples) compiles for Cortex-M4 against the
    stand-ins written from the library facts (tests/tflm_standins.py) and tests/stubs
    (declarations only: no link)."""
    res = render.generate(DATA / "digits_cnn.tflite", tmp_path / "fw", boards=["nano33ble"],
                          arena=8192, fmt="arduino")
    assert res.sketch_dir is not None
    lib = res.sketch_dir
    cxx = ["arm-none-eabi-g++", *ARM["nano33ble"], "-mthumb", "-Os", "-std=gnu++17",
           "-fno-exceptions", "-fno-rtti", *WARN, f"-I{board_standins()}",
           f"-I{Path(__file__).parent / 'stubs'}", f"-I{lib / 'src'}", "-include", "Arduino.h",
           "-x", "c++", "-c"]
    for f in [*sorted((lib / "src").glob("*.cpp")), *sorted(lib.glob("examples/*/*.ino"))]:
        _run([*cxx, "-DARDUINO=10819", str(f), "-o", str(tmp_path / f"{f.stem}.o")])
    cc = ["arm-none-eabi-gcc", *ARM["nano33ble"], "-mthumb", "-Os", "-std=c99", *WARN,
          f"-I{lib / 'src'}", "-c"]
    for f in sorted((lib / "src").glob("*.c")):  # the API: plain C, no Arduino.h
        _run([*cc, "-DARDUINO=10819", str(f), "-o", str(tmp_path / f"{f.stem}.o")])
    assert {p.name for p in tmp_path.glob("*.o")} >= {"td_app.o", "td_tflm_app.o", "basic.o",
                                                      "validate.o", "td_app_arduino.o"}
    syms = subprocess.run(["arm-none-eabi-nm", str(tmp_path / "td_app_arduino.o")],
                          capture_output=True, text=True, check=True).stdout
    assert " T td_app_arduino_micros" in syms  # the Arduino default clock: micros()


def test_c_runtime_validate_example_serves_the_protocol(tmp_path: Path) -> None:
    """The C-runtime library's validate example (td_c_app.cpp + td_arduino.cpp), built on
    the host with Serial on a pseudo-terminal, passes `tinydeploy validate` bit-exact."""
    from tinydeploy.device.ptyproc import PtyProcess, wait_for_pty
    from tinydeploy.validation import validate

    facts = load(DATA / "digits_cnn.tflite")
    q = np.load(DATA / "digits_cnn.inputs.npy")[:6]
    data = tmp_path / "d.npz"
    x, y = dequantize(q, facts.inputs[0]), np.zeros(6, np.float32)
    np.savez(data, x_train=x, y_train=y, x_val=x, y_val=y, x_test=x, y_test=y)
    res = render.generate(facts, tmp_path / "fw", boards=["nucleo_f446re"], runtime="c",
                          fmt="arduino")
    assert res.sketch_dir is not None
    exe = _host_build(res.sketch_dir, tmp_path / "obj", "validate")
    proc = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env={"TD_HOST_PTY": "1", "PATH": "/usr/bin:/bin"})
    with PtyProcess(proc, "") as dev:
        port, said = wait_for_pty(proc, 10.0)
        assert port, said
        result = validate(facts, data, tmp_path / "report", port=port)
        assert dev.running
    doc = json.loads((tmp_path / "report" / "validation.json").read_text())
    assert result.passed, doc
    text = json.dumps(doc)
    assert '"nucleo_f446re"' in text and '"c"' in text
