"""The generated library as an API to build on: per-tensor facts, preprocessing, named error
codes in td_app.h, the library in plain C without Arduino (the host example built with
-Werror and run on real samples), library.properties, and deploy's data reaching the basic
example."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tinydeploy import render
from tinydeploy.boards import BOARDS
from tinydeploy.facts import ModelFacts, load
from tinydeploy.hostref import quantize_input
from tinydeploy.hostref_native import reference_model

DATA = Path(__file__).parent / "data"
PKG = Path(render.__file__).parent
STRICT = ["-Wall", "-Wextra", "-Werror"]
pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

# prints what a program sees of td_app.h: the tensor tables, the preprocessing record and
# every error code's text (C, and the same file as C++: the header works from both)
PROBE = r"""
#include <stdio.h>
#include "td_app.h"
static void tensor(const char *side, const td_tensor_t *t) {
  unsigned i;
  printf("%s %s dtype=%d scale=%.9g zp=%ld count=%lu bytes=%lu offset=%lu first=%lu dims=",
         side, t->name, t->dtype, (double)t->scale, (long)t->zero_point,
         (unsigned long)t->count, (unsigned long)t->bytes, (unsigned long)t->offset,
         (unsigned long)t->float_offset);
  for (i = 0; i < t->rank; ++i) printf("%s%ld", i ? "," : "", (long)t->dims[i]);
  printf("\n");
}
int main(void) {
  int code;
  unsigned k;
  for (k = 0; k < TD_APP_NUM_INPUTS; ++k) tensor("input", &td_inputs[k]);
  for (k = 0; k < TD_APP_NUM_OUTPUTS; ++k) tensor("output", &td_outputs[k]);
  printf("pre known=%d mult=%.9g rate=%.9g window=%lu channels=%lu text=%s\n",
         td_preprocessing.known, (double)td_preprocessing.multiplier,
         (double)td_preprocessing.sample_rate_hz, (unsigned long)td_preprocessing.window,
         (unsigned long)td_preprocessing.channels, td_preprocessing.text);
  for (code = -4; code <= 7; ++code) printf("code %d: %s\n", code, td_strerror(code));
  return 0;
}
"""


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(cmd[:6])}...\n{proc.stdout[-2000:]}" \
                                 f"{proc.stderr[-3000:]}"
    return proc.stdout


def _objects(lib: Path, work: Path) -> list[str]:
    """The library's C sources compiled once: gcc -std=c99 -pedantic -Werror, only src/ on
    the include path (no Arduino header anywhere)."""
    objs = []
    for src in sorted((lib / "src").glob("td_*.c")):
        objs.append(str(work / f"{src.stem}.o"))
        _run(["gcc", "-std=c99", "-O1", *STRICT, "-pedantic", f"-I{lib / 'src'}", "-c",
              str(src), "-o", objs[-1]])
    return objs


def _build_host_c(lib: Path, work: Path, objs: list[str]) -> Path:
    """The library's plain-C host example, built as its README says plus -Werror."""
    exe = work / "host_c"
    _run(["gcc", "-std=c99", "-O1", *STRICT, "-pedantic", f"-I{lib / 'src'}", *objs,
          str(lib / "extras" / "host_c" / "main.c"), "-lm", "-o", str(exe)])
    return exe


def _probe(lib: Path, work: Path, objs: list[str]) -> str:
    """PROBE built with gcc and with g++ against the library's objects: same output."""
    src = work / "probe.c"
    src.write_text(PROBE)
    _run(["gcc", "-std=c99", *STRICT, f"-I{lib / 'src'}", str(src), *objs, "-lm", "-o",
          str(work / "probe")])
    _run(["g++", "-std=c++17", *STRICT, f"-I{lib / 'src'}", "-x", "c++", str(src), "-x", "none",
          *objs, "-lm", "-o", str(work / "probe_cxx")])
    out = _run([str(work / "probe")])
    assert _run([str(work / "probe_cxx")]) == out
    return out


def _host_label(facts: ModelFacts, x: np.ndarray, labels: list[str]) -> str:
    q = quantize_input(x[np.newaxis], facts.inputs[0])[0]
    ref = reference_model(facts)  # tflite-micro, else the C runtime stand-in
    try:
        return labels[int(np.argmax(ref.predict_all([q[np.newaxis]])[0][0]))]
    finally:
        ref.close()


def test_plain_c_host_example_prints_the_host_label(digits_run, tmp_path: Path) -> None:
    """A trained digits model, `--runtime c`: extras/host_c/main.c built with gcc -Werror
    (no Arduino, no C++) prints, for the stored sample and for samples read from files, the
    label the host TFLM reference predicts; the header's tables match the model."""
    model = Path(digits_run.int8_tflite)
    res = render.generate(model, tmp_path / "fw", boards=["nano33ble"], runtime="c",
                          fmt="arduino", data=digits_run.data_npz)
    assert res.sketch_dir is not None
    lib = res.sketch_dir
    objs = _objects(lib, tmp_path)
    exe = _build_host_c(lib, tmp_path, objs)
    facts = load(model)
    labels = [str(d) for d in range(10)]
    with np.load(digits_run.data_npz) as npz:
        x_test, y_test = npz["x_test"][:12], npz["y_test"][:12]
    out = _run([str(exe)])
    assert "zeros" not in out
    assert f"label: {_host_label(facts, x_test[0], labels)}\n" in out, out
    assert f"expected: {int(y_test[0])}\n" in out
    seen = set()
    for k in range(1, len(x_test)):
        f32 = tmp_path / f"x{k}.f32"
        x_test[k].astype("<f4").tofile(f32)
        want = _host_label(facts, x_test[k], labels)
        got = re.search(r"^label: (.*)$", _run([str(exe), str(f32)]), re.M)
        assert got and got.group(1) == want, (k, want)
        seen.add(want)
    assert len(seen) >= 3  # a model stuck on one class cannot pass
    bad = tmp_path / "short.f32"
    x_test[1].reshape(-1)[:10].astype("<f4").tofile(bad)
    proc = subprocess.run([str(exe), str(bad)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "exactly 64 float32 values" in proc.stderr

    probe = _probe(lib, tmp_path, objs)
    t = facts.inputs[0]
    assert re.search(rf"^input {re.escape(t.name)} dtype=9 scale={float(np.float32(t.scale)):.9g} "
                     rf"zp={t.zero_point} count=64 bytes=64 offset=0 first=0 dims=1,8,8,1$",
                     probe, re.M), probe
    assert re.search(r"^output \S+ dtype=9 .* count=10 bytes=10 offset=0 first=0 dims=1,10$",
                     probe, re.M), probe
    # train recorded the example's preprocessing, quantize carried it, generate rendered it
    assert "pre known=1 mult=0.0625 rate=0 window=0 channels=1 text=an 8x8 grayscale" in probe
    codes = dict(re.findall(r"^code (-?\d+): (.*)$", probe, re.M))
    assert codes["0"] == "ok" and codes["3"].startswith("AllocateTensors() failed")
    assert codes["-4"] == codes["7"] == "unknown error code"
    assert len({codes[str(c)] for c in range(-3, 7)}) >= 9  # each code its own text
    header = (lib / "src" / "td_app.h").read_text()
    for c in range(-3, 7):
        assert re.search(rf"#define TD_APP_(OK|ERR_\w+) \(?{c}\)?\s", header), c


def test_vibration_preprocessing_in_header_and_readme(vibration_run, tmp_path: Path) -> None:
    """Sample rate, window and channels of the vibration example reach td_app.h and the
    README; for the TFLM runtime too."""
    quant = json.loads(Path(vibration_run.report_json).read_text())
    pre = quant["preprocessing"]
    assert (pre["sample_rate_hz"], pre["window"], pre["channels"]) == (400.0, 128, 3)
    with np.load(vibration_run.data_npz) as npz:
        assert pre["train_max"] == pytest.approx(float(npz["x_train"].max()))
    res = render.generate(vibration_run.int8_tflite, tmp_path / "fw", boards=["nano33ble"],
                          arena=32768, fmt="arduino")
    header = (tmp_path / "fw" / "fw" / "src" / "td_app.h").read_text()
    assert "#define TD_APP_PRE_KNOWN 1" in header
    assert "#define TD_APP_PRE_SAMPLE_RATE_HZ 400.0f" in header
    assert "#define TD_APP_PRE_WINDOW 128u" in header and "#define TD_APP_PRE_CHANNELS 3u" in header
    assert "#define TD_APP_INPUT0_DIMS {1, 128, 3}" in header
    readme = Path(res.readme).read_text()
    assert "sample rate 400 Hz, window 128 samples of 3 channel(s)" in readme
    assert "training example vibration" in readme


def test_user_model_preprocessing_unknown_and_zero_sample_said(tmp_path: Path) -> None:
    """A model from elsewhere without data: the header and README say "unknown", the sample
    header says it is zeros and the host example prints that."""
    res = render.generate(DATA / "sine_mlp.tflite", tmp_path / "fw", boards=["rpipico"],
                          runtime="c", fmt="arduino")
    assert res.sketch_dir is not None
    header = (res.sketch_dir / "src" / "td_app.h").read_text()
    assert "#define TD_APP_PRE_KNOWN 0" in header and "unknown: this model carries no" in header
    assert "Unknown (`TD_APP_PRE_KNOWN 0`)" in Path(res.readme).read_text()
    assert "#define TD_SAMPLE_IS_ZEROS 1" in (res.sketch_dir / "src" / "td_sample.h").read_text()
    objs = _objects(res.sketch_dir, tmp_path)
    out = _run([str(_build_host_c(res.sketch_dir, tmp_path, objs))])
    assert "warning: the sample is all zeros, not real data" in out
    assert re.search(r"^regression: -?\d", out, re.M), out
    # the user records it: a preprocessing.json beside the model
    own = tmp_path / "own" / "sine.tflite"
    own.parent.mkdir()
    shutil.copy(DATA / "sine_mlp.tflite", own)
    (own.parent / "preprocessing.json").write_text(json.dumps(
        {"text": "angle in degrees / 180 * pi", "unit": "deg", "multiplier": 0.0174533}))
    res = render.generate(own, tmp_path / "fw2", boards=["rpipico"], runtime="c",
                          fmt="arduino")
    header = (tmp_path / "fw2" / "fw2" / "src" / "td_app.h").read_text()
    assert "#define TD_APP_PRE_KNOWN 1" in header and '"angle in degrees / 180 * pi"' in header
    assert "#define TD_APP_PRE_MULTIPLIER 0.0174533f" in header


def test_library_properties_follow_the_runtime(tmp_path: Path) -> None:
    """TFLM: the architectures its Arduino library declares and depends= pinned to its
    version; C runtime: any architecture, no dependency; never a placeholder url."""
    lib = BOARDS["nano33ble"].tflm_lib
    assert lib is not None
    render.generate(DATA / "digits_cnn.tflite", tmp_path / "t", boards=["nano33ble"],
                    arena=8192, fmt="arduino")
    props = dict(line.split("=", 1) for line in
                 (tmp_path / "t" / "t" / "library.properties").read_text().splitlines())
    assert props["architectures"] == ",".join(lib.architectures) != "*"
    assert props["depends"] == f"{lib.name} (={lib.version})" == "Chirale_TensorFLowLite (=2.0.0)"
    assert "url" not in props
    render.generate(DATA / "digits_cnn.tflite", tmp_path / "c", boards=["nano33ble"],
                    runtime="c", fmt="arduino")
    props = dict(line.split("=", 1) for line in
                 (tmp_path / "c" / "c" / "library.properties").read_text().splitlines())
    assert props["architectures"] == "*" and "depends" not in props and "url" not in props


def test_deploy_passes_its_data_to_the_basic_example(digits_run, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy keeps the model (OUT/quantize) and the data apart: the firmware it generates
    still stores x_test[0] of the data and its label, not zeros."""
    from tinydeploy import pipeline
    from tinydeploy.device import flashing

    class Flashed(Exception):
        pass

    def stop(project: Path, board: object, port: object = None) -> None:
        raise Flashed(str(project))

    monkeypatch.setattr(flashing, "flash", stop)
    monkeypatch.setattr(flashing, "pio_command", lambda: ["pio"])
    monkeypatch.setattr(flashing, "find_port", lambda board: "/dev/null")
    model = tmp_path / "m" / "model_int8.tflite"  # the model alone: no data.npz beside it
    model.parent.mkdir()
    shutil.copy(digits_run.int8_tflite, model)
    with pytest.raises(Flashed):
        pipeline.deploy(str(model), tmp_path / "d", board="nano33ble",
                        data=digits_run.data_npz)
    sample = next((tmp_path / "d" / "firmware").rglob("td_sample.h")).read_text()
    with np.load(digits_run.data_npz) as npz:
        y0 = int(npz["y_test"][0])
    assert "#define TD_SAMPLE_IS_ZEROS 0" in sample
    assert f'td_sample_expected = "{y0}"' in sample


def test_library_and_api_do_not_import_render() -> None:
    """render -> library -> app_api -> render_base, one way: none of the lower modules
    imports render (nor library, for app_api and render_base), at any level."""
    lower = {"library.py": {"render"}, "app_api.py": {"render", "library"},
             "render_base.py": {"render", "library", "app_api"},
             "preprocessing.py": {"render", "library", "app_api"}}
    for name, banned in lower.items():
        tree = ast.parse((PKG / name).read_text())
        found = {n.module.split(".")[0] for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom) and n.level == 1 and n.module}
        assert not found & banned, (name, found & banned)
