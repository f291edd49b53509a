"""The object cache of tinydeploy's C library sources: a hit only for the same preprocessed
source, flags and compiler; an edited source or header is compiled anew; the compiler's
messages come back on a hit; a failed compile leaves nothing; old objects are pruned."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tinydeploy import objcache
from tinydeploy.cruntime import generate_c
from tinydeploy.cruntime.harness import build_harness, compiler, run_harness
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load

DATA = Path(__file__).parent / "data"
pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TINYDEPLOY_TFLM_CACHE", str(tmp_path / "cache" / "tflm"))
    return tmp_path / "cache" / "obj"


class Runs:
    """The compiles that really ran (a hit runs none)."""

    def __init__(self) -> None:
        self.cmds: list[list[str]] = []

    def __call__(self, cmd: list[str], what: str) -> subprocess.CompletedProcess[str]:
        self.cmds.append(cmd)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise TinyDeployError("build_failed", what=what, rc=proc.returncode,
                                  tail=proc.stderr.strip().splitlines()[-1], fix="fix it")
        return proc


def _lib(folder: Path, k: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "k.h").write_text(f"/* a comment */\n#define K {k}\n#ifndef EXTRA\n"
                                "#define EXTRA 0\n#endif\n")
    src = folder / "k.c"
    src.write_text('#include "k.h"\nint k(void) { int unused; return K + EXTRA; }\n')
    return src


def _compile(src: Path, runs: Runs, *flags: str) -> tuple[list[Path], str]:
    return objcache.compile_objects(compiler(), [src], ["-Wall", "-O1", f"-I{src.parent}",
                                                        *flags], runs, lambda s: s.name)


def test_hit_needs_the_same_preprocessed_source_and_flags(tmp_path: Path, cache: Path) -> None:
    runs = Runs()
    (obj,), msgs = _compile(_lib(tmp_path / "a"), runs)
    assert obj.parent == cache and obj.is_file() and "unused" in msgs and len(runs.cmds) == 1
    # another folder (other -I path), a changed comment: the same translation unit, a hit
    src = _lib(tmp_path / "b")
    header = (src.parent / "k.h").read_text()
    (src.parent / "k.h").write_text(header.replace("a comment", "another comment"))
    assert _compile(src, runs) == ([obj], msgs) and len(runs.cmds) == 1
    assert _compile(src, runs, "-DUNUSED=1") == ([obj], msgs) and len(runs.cmds) == 1
    # a header that changes the code, a define it uses, other flags: compiled anew
    (again,), _ = _compile(_lib(tmp_path / "c", k=2), runs)
    (defined,), _ = _compile(src, runs, "-DEXTRA=1")
    (optimized,), _ = _compile(src, runs, "-O2")
    assert len({obj, again, defined, optimized}) == 4 and len(runs.cmds) == 4


def test_failed_compile_leaves_no_object(tmp_path: Path, cache: Path) -> None:
    src = _lib(tmp_path)
    src.write_text("int broken(void) { return }\n")
    with pytest.raises(TinyDeployError) as err:
        _compile(src, Runs())
    assert err.value.code == "build_failed"
    assert not list(cache.iterdir())


def test_oldest_objects_are_pruned(tmp_path: Path, cache: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(objcache, "MAX_OBJECTS", 2)
    runs = Runs()
    first = [_compile(_lib(tmp_path / str(k), k), runs)[0][0] for k in range(3)]
    assert not first[0].exists() and not first[0].with_suffix(".txt").exists()
    assert first[2].is_file()


def test_edited_kernel_copy_is_compiled_not_taken_from_the_cache(tmp_path: Path,
                                                                 cache: Path) -> None:
    facts = load(DATA / "sine_mlp.tflite")
    res = generate_c(facts, tmp_path / "c", tflm_arena=False)
    x = np.arange(-128, 128, dtype=np.int8).reshape(256, 1)
    y = run_harness(build_harness(res.out_dir), x, facts.outputs[0].shape[1:])
    assert any(cache.glob("*.o"))
    for name in ("td_kernels.c", "td_kernels.h"):  # a source and a header it includes
        path = res.out_dir / name
        text = path.read_text()
        path.write_text(text + "\n#error edited\n")
        with pytest.raises(TinyDeployError, match="edited"):
            build_harness(res.out_dir)
        path.write_text(text)
    np.testing.assert_array_equal(run_harness(build_harness(res.out_dir), x, y.shape[1:]), y)


def test_unwritable_cache_falls_back_to_a_temporary_folder(tmp_path: Path, cache: Path) -> None:
    cache.parent.mkdir(parents=True)
    cache.write_text("a file where the cache folder should be")
    (obj,), _ = _compile(_lib(tmp_path / "a"), Runs())
    assert obj.is_file() and not obj.is_relative_to(cache.parent)


def test_key_is_remembered_until_a_header_changes(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    real = objcache._preprocessed_key

    def counting(cc: str, src: Path, flags) -> str | None:  # type: ignore[no-untyped-def]
        calls.append(src)
        return real(cc, src, flags)

    monkeypatch.setattr(objcache, "_preprocessed_key", counting)
    src, runs = _lib(tmp_path / "a"), Runs()
    first = _compile(src, runs)
    assert _compile(src, runs) == first and len(calls) == 1  # same place, nothing changed
    (src.parent / "k.h").write_text("#define K 3\n#define EXTRA 0\n")  # a header it includes
    (obj,), _ = _compile(src, runs)
    assert len(calls) == 2 and obj != first[0][0] and len(runs.cmds) == 2
