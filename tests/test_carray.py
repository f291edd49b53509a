"""C array stage: --xxd is byte-identical to Debian's xxd -i; the default compiles and
holds the exact bytes at a 16-byte aligned address."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from tinydeploy.c_array import c_identifier, carray, model_source, xxd_name
from tinydeploy.errors import TinyDeployError

XXD = shutil.which("xxd")
GXX = shutil.which("g++")
DATA = Path(__file__).parent / "data"


def _xxd(rel: str, cwd: Path) -> bytes:
    assert XXD, "xxd must be installed (apt install xxd)"
    return subprocess.run([XXD, "-i", rel], cwd=cwd, check=True, capture_output=True).stdout


@pytest.mark.parametrize("size", [0, 1, 12, 13, 4096, 100_003])
def test_xxd_identical_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    rng = random.Random(size)
    (tmp_path / "model.tflite").write_bytes(bytes(rng.getrandbits(8) for _ in range(size)))
    monkeypatch.chdir(tmp_path)
    written = carray("model.tflite", "out", xxd=True)
    assert written == [Path("out/model_tflite.h")]
    assert written[0].read_bytes() == _xxd("model.tflite", tmp_path)


AWKWARD = ["my model-v2.tflite", "9lives.bin", "2x.tflite", "héllo wörld.tflite",
           "sub/dir/m.tflite", "./sub/dir/m.tflite", "a.b.c", "x", "_y.bin", "Caps-ÄÖ.TFLITE"]


@pytest.mark.parametrize("rel", AWKWARD)
def test_xxd_identical_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rel: str) -> None:
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(29))
    monkeypatch.chdir(tmp_path)
    (out,) = carray(rel, tmp_path / "o.h", xxd=True)
    assert out == tmp_path / "o.h"
    assert out.read_bytes() == _xxd(rel, tmp_path)


def test_xxd_name_rules() -> None:
    assert xxd_name("9a-b.c") == "__9a_b_c"
    assert xxd_name("é") == "__"
    assert xxd_name("./x") == "__x"


def test_xxd_via_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from tinydeploy.cli import main

    (tmp_path / "m 1.bin").write_bytes(b"\x00\xff" * 7)
    monkeypatch.chdir(tmp_path)
    assert main(["carray", "./m 1.bin", "--out", "gen", "--xxd"]) == 0
    out = Path(capsys.readouterr().out.strip())
    assert out.read_bytes() == _xxd("./m 1.bin", tmp_path)


@pytest.mark.parametrize("raw", ["g_model", "my model", "9lives", "int", "", "__x", "_Foo",
                                 "héllo", "a-b.c", "class", "___", "中文"])
def test_c_identifier(raw: str) -> None:
    ident = c_identifier(raw)
    assert ident and (ident[0].isalpha() or ident[0] == "_")
    assert all(c.isascii() and (c.isalnum() or c == "_") for c in ident)
    assert not ident.startswith("__") and not (ident[0] == "_" and ident[1:2].isupper())
    assert ident not in {"int", "class", "main"}
    assert c_identifier(ident) == ident


def _compile_and_run(tmp_path: Path, folder: Path, header: str, name: str, data: bytes) -> None:
    assert GXX, "g++ must be installed"
    (tmp_path / "expected.bin").write_bytes(data)
    main = tmp_path / "main.cc"
    main.write_text(f"""
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>
#include "{header}"
#include "{header}"  // include guard
int main(int argc, char** argv) {{
  if (argc != 2) return 9;
  if (reinterpret_cast<std::uintptr_t>({name}) % 16 != 0) return 2;
  std::FILE* f = std::fopen(argv[1], "rb");
  if (!f) return 3;
  std::vector<unsigned char> buf(1 << 20);
  std::size_t n = std::fread(buf.data(), 1, buf.size(), f);
  std::fclose(f);
  if (n != {name}_len) return 4;
  if (n && std::memcmp(buf.data(), {name}, n) != 0) return 5;
  return 0;
}}
""")
    flags = ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-I", str(folder)]
    objs = []
    for src in [*folder.glob("*.cc"), main]:
        obj = tmp_path / (src.stem + ".o")
        subprocess.run([GXX, *flags, "-c", str(src), "-o", str(obj)], check=True)
        objs.append(str(obj))
    exe = tmp_path / "prog"
    subprocess.run([GXX, *objs, "-o", str(exe)], check=True)
    assert subprocess.run([str(exe), str(tmp_path / "expected.bin")]).returncode == 0


@pytest.mark.parametrize("size", [0, 13, 100_003])
def test_default_compiles_aligned_exact(tmp_path: Path, size: int) -> None:
    data = (DATA / "sine_mlp.tflite").read_bytes() if size == 13 else os.urandom(size)
    src = tmp_path / "in.tflite"
    src.write_bytes(data)
    written = carray(src, tmp_path / "gen")
    assert [p.name for p in written] == ["model_data.h", "model_data.cc"]
    assert "extern const unsigned char g_model[];" in written[0].read_text()
    assert "alignas(16) const unsigned char g_model[]" in written[1].read_text()
    _compile_and_run(tmp_path, tmp_path / "gen", "model_data.h", "g_model", data)


def test_default_name_and_stem(tmp_path: Path) -> None:
    data = (DATA / "digits_cnn.tflite").read_bytes()
    src = tmp_path / "digits.tflite"
    src.write_bytes(data)
    written = carray(src, tmp_path / "gen" / "net.h", name="9 digits-net")
    assert [p.name for p in written] == ["net.h", "net.cc"]
    assert '#include "net.h"' in written[1].read_text()
    ident = c_identifier("9 digits-net")
    _compile_and_run(tmp_path, tmp_path / "gen", "net.h", ident, data)


def test_model_source_text() -> None:
    header, source = model_source(b"\x01\x02", "my model")
    assert "#ifndef" in header and "extern const unsigned int my_model_len;" in header
    assert "0x01, 0x02," in source and "const unsigned int my_model_len = 2;" in source


def test_missing_input(tmp_path: Path) -> None:
    with pytest.raises(TinyDeployError) as exc:
        carray(tmp_path / "nope.tflite", tmp_path / "out")
    assert exc.value.code == "file_not_found"
    with pytest.raises(TinyDeployError):
        carray(tmp_path, tmp_path / "out")  # a directory is not a file
    assert not (tmp_path / "out").exists()


def test_unwritable_output_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "m.bin"
    src.write_bytes(b"abc")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(TinyDeployError) as exc:
        carray(src, blocker / "sub")  # parent is a regular file
    assert exc.value.code == "io_error"
    (tmp_path / "gen" / "model_data.cc").mkdir(parents=True)  # second target is a folder
    with pytest.raises(TinyDeployError):
        carray(src, tmp_path / "gen")
    assert sorted(p.name for p in (tmp_path / "gen").iterdir()) == ["model_data.cc"]
    assert blocker.read_text() == "x"
