"""All-or-nothing output: staged folders and atomically written files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinydeploy.errors import TinyDeployError
from tinydeploy.output import staged_output, write_atomic, write_files


def test_staged_output_new_folder(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "out"
    with staged_output(out) as tmp:
        assert tmp.parent == out.parent.absolute() and not out.exists()
        (tmp / "x.txt").write_text("x")
        (tmp / "sub").mkdir()
    assert (out / "x.txt").read_text() == "x" and (out / "sub").is_dir()
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]


def test_staged_output_replaces_generated_entries_keeps_others(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "gen").mkdir(parents=True)
    (out / "gen" / "stale").write_text("old")
    (out / "mine.txt").write_text("mine")
    (out / "f").write_text("was a file")
    with staged_output(out) as tmp:
        (tmp / "gen").mkdir()
        (tmp / "gen" / "new").write_text("new")
        (tmp / "f").mkdir()
    assert sorted(p.name for p in (out / "gen").iterdir()) == ["new"]
    assert (out / "mine.txt").read_text() == "mine" and (out / "f").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_staged_output_error_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), staged_output(tmp_path / "deep" / "er" / "out") as tmp:
        (tmp / "x").write_text("x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("k")
    with pytest.raises(RuntimeError), staged_output(tmp_path / "out") as tmp:
        (tmp / "keep").write_text("replaced?")
        raise RuntimeError("boom")
    assert (tmp_path / "out" / "keep").read_text() == "k"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_staged_output_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(TinyDeployError) as exc, staged_output(out):
            pass
        assert exc.value.code == "output_exists"
    assert (tmp_path / "file").read_text() == "x"


def test_write_atomic_and_write_files(tmp_path: Path) -> None:
    assert write_atomic(tmp_path / "new" / "t.txt", "héllo") == tmp_path / "new" / "t.txt"
    assert (tmp_path / "new" / "t.txt").read_text(encoding="utf-8") == "héllo"
    write_atomic(tmp_path / "new" / "t.txt", b"\x00\x01")
    assert (tmp_path / "new" / "t.txt").read_bytes() == b"\x00\x01"
    (tmp_path / "d" / "b").mkdir(parents=True)  # second target is a folder: write nothing
    with pytest.raises(TinyDeployError) as exc:
        write_files({tmp_path / "d" / "a": "a", tmp_path / "d" / "b": "b"})
    assert exc.value.code == "io_error"
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["b"]
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["t.txt"]
