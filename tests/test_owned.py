"""`generate` owns only the files it wrote (issue 19, "The user's project is theirs").

User files added to every generated layout survive a re-generate (same and other
``--format``, both runtimes); a generated file the user edited is kept and the new one
written beside it; stale generated files of an earlier format are removed; the PlatformIO
app skeleton ``src/main.cpp`` is created once. Render only (no PlatformIO), small models.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from tinydeploy import render
from tinydeploy.cli import main
from tinydeploy.output import OWNED_MANIFEST, staged_output

DATA = Path(__file__).parent / "data"
MODEL = DATA / "sine_mlp.tflite"
HOST = Path(__file__).parent / "arduino_host"
NAME = "fw"  # the library name: the --out folder's


def gen(out: Path, fmt: str, runtime: str, board: str = "nano33ble", **kw: object) -> object:
    if runtime == "tflm":
        kw.setdefault("arena", 4096)  # no arena prediction: render only
    return render.generate(MODEL, out, boards=[board], fmt=fmt, runtime=runtime, **kw)


def user_files(out: Path) -> dict[Path, str]:
    """One user file in every generated layout (project, src/, lib/, the libraries' src/)."""
    files = {out / "notes.txt": "my notes\n",
             out / "src" / "sensor.cpp": "int sensor_read(void) { return 1; }\n",
             out / "lib" / "private" / "src" / "private.h": "#define PRIVATE 1\n",
             out / "lib" / NAME / "src" / "extra.h": "#define EXTRA 1\n",
             out / NAME / "src" / "extra.h": "#define EXTRA 2\n",
             out / NAME / "examples" / "mine" / "mine.ino": "void setup() {}\nvoid loop() {}\n"}
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return files


def generated(out: Path) -> dict[str, str]:
    """The manifest: relative path -> sha256 of what generate wrote."""
    return json.loads((out / OWNED_MANIFEST).read_text())["files"]


@pytest.mark.parametrize("runtime", ["c", "tflm"])
def test_user_files_survive_every_regenerate(tmp_path: Path, runtime: str) -> None:
    out = tmp_path / NAME
    gen(out, "both", runtime)
    skeleton = out / "src" / "main.cpp"
    assert skeleton.is_file() and "src/main.cpp" not in generated(out)  # created, not owned
    skeleton.write_text("/* my product */\n")
    mine = user_files(out)
    for fmt in ("both", "platformio", "arduino", "both"):  # same and other formats
        gen(out, fmt, runtime)
        assert {p: p.read_text() for p in mine} == mine, fmt
        assert skeleton.read_text() == "/* my product */\n", fmt  # never overwritten
        assert not list(out.rglob("*.new")), fmt  # nothing of theirs had to be set aside
        owned = generated(out)
        assert all((out / rel).is_file() for rel in owned)
        assert not any(Path(rel) in {p.relative_to(out) for p in mine} for rel in owned)
        # stale files of the other format are gone, this format's are there
        assert (out / "platformio.ini").exists() == (fmt != "arduino"), fmt
        assert (out / "src" / "tinydeploy" / "main.cpp").exists() == (fmt != "arduino"), fmt
        assert (out / "lib" / NAME / "library.properties").exists() == (fmt != "arduino"), fmt
        assert (out / NAME / "library.properties").exists() == (fmt != "platformio"), fmt
        assert (out / NAME / "src" / "td_app.h").exists() == (fmt != "platformio"), fmt
        assert not (out / NAME / "examples" / "basic").exists() or fmt != "platformio"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".tinydeploy-stage")]


def test_edited_generated_file_kept_and_new_one_beside_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / NAME
    gen(out, "both", "c")
    header = out / NAME / "src" / "td_app.h"
    fresh = header.read_text()
    header.write_text(fresh + "/* my tweak */\n")
    with caplog.at_level(logging.WARNING, logger="tinydeploy"):
        gen(out, "both", "c")
    assert header.read_text() == fresh + "/* my tweak */\n"
    new = out / NAME / "src" / "td_app.h.new"
    assert new.read_text() == fresh
    lines = [r.getMessage() for r in caplog.records if "td_app.h" in r.getMessage()]
    assert len(lines) == 1 and str(header) in lines[0] and str(new) in lines[0], lines
    caplog.clear()
    gen(out, "both", "c")  # again: still kept, the .new refreshed, no .new.new
    assert header.read_text().endswith("/* my tweak */\n") and new.read_text() == fresh
    assert not list(out.rglob("*.new.new"))
    # the user takes the new version: the .new is generate's and goes away next time
    shutil.move(new, header)
    gen(out, "both", "c")
    assert header.read_text() == fresh and not new.exists()


def test_edited_file_of_an_earlier_format_is_kept(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / NAME
    gen(out, "arduino", "c")
    edited = out / NAME / "src" / "td_app.c"
    edited.write_text(edited.read_text() + "// mine\n")
    with caplog.at_level(logging.WARNING, logger="tinydeploy"):
        gen(out, "platformio", "c")
    assert edited.read_text().endswith("// mine\n")
    assert any(str(edited) in r.getMessage() for r in caplog.records)
    assert not (out / NAME / "src" / "td_app.h").exists()  # unedited stale files removed
    assert not (out / NAME / "library.properties").exists()


def test_same_named_user_file_before_the_first_generate(tmp_path: Path) -> None:
    out = tmp_path / NAME
    out.mkdir()
    (out / "README.md").write_text("my readme\n")
    (out / "src").mkdir()
    (out / "src" / "main.cpp").write_text("/* my app, older than the project */\n")
    gen(out, "platformio", "c")
    assert (out / "README.md").read_text() == "my readme\n"
    assert "tinydeploy" in (out / "README.md.new").read_text()
    assert (out / "src" / "main.cpp").read_text().startswith("/* my app")


def test_c_runtime_sources_on_native_keep_user_files(tmp_path: Path) -> None:
    out = tmp_path / "model"
    gen(out, "both", "c", board="native")
    (out / "mine.c").write_text("int mine;\n")
    model_h = out / "td_model.h"
    model_h.write_text(model_h.read_text() + "/* edited */\n")
    gen(out, "both", "c", board="native")
    assert (out / "mine.c").read_text() == "int mine;\n"
    assert model_h.read_text().endswith("/* edited */\n") and (out / "td_model.h.new").is_file()


def test_manifest_never_reaches_outside(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "victim").write_text("v")
    (out / OWNED_MANIFEST).write_text(json.dumps({"files": {"../victim": "0" * 64}}))
    with staged_output(out, owned=True) as tmp:
        (tmp / "a.txt").write_text("a")
    assert (tmp_path / "victim").read_text() == "v" and generated(out).keys() == {"a.txt"}


def test_cli_name_names_the_library(tmp_path: Path) -> None:
    out = tmp_path / "build"
    rc = main(["generate", str(MODEL), "--out", str(out), "--board", "nano33ble",
               "--runtime", "c", "--format", "both", "--name", "sine_lib"])
    assert rc in (0, None)
    props = (out / "sine_lib" / "library.properties").read_text()
    assert "name=sine_lib" in props
    assert (out / "lib" / "sine_lib" / "src" / "sine_lib.h").is_file()
    assert "#include <sine_lib.h>" in (out / "src" / "main.cpp").read_text()


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
@pytest.mark.parametrize("runtime", ["c", "tflm"])
def test_app_skeleton_compiles_against_the_library(tmp_path: Path, runtime: str) -> None:
    out = tmp_path / NAME
    gen(out, "platformio", runtime)
    inc = [f"-I{HOST}", f"-I{out / 'lib' / NAME / 'src'}"]
    if runtime == "tflm":
        inc.append(f"-I{Path(__file__).parent / 'stubs'}")
    proc = subprocess.run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-fsyntax-only",
                           *inc, str(out / "src" / "main.cpp")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_a_user_file_where_generate_needs_a_folder_is_one_error(tmp_path: Path) -> None:
    from tinydeploy.errors import TinyDeployError

    out = tmp_path / NAME
    gen(out, "arduino", "c")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (out / "lib").write_text("my file called lib\n")
    with pytest.raises(TinyDeployError) as exc:
        gen(out, "both", "c")
    assert exc.value.code == "io_error" and "lib" in str(exc.value)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "lib"} \
        == before  # nothing half-written
    assert not [p for p in out.iterdir() if p.name.startswith(".tinydeploy-stage")]
