"""Faults end cleanly: labels of the wrong shape or type, a read-only --out and a full
disk each end in one error line (``bad_data`` / ``io_error``, exit 2) with nothing written.
Real read-only and full filesystems are small tmpfs mounts (root only, else skipped); the
same errors are also raised through a patched filesystem call, which runs anywhere."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinydeploy import render
from tinydeploy.errors import TinyDeployError
from tinydeploy.validation import validate

DATA = Path(__file__).parent / "data"
DIGITS = DATA / "digits_cnn.tflite"  # 10 classes, input [1, 8, 8, 1]
N = 12
Y = np.arange(N) % 10


def _npz(path: Path, y: np.ndarray) -> Path:
    x = np.random.default_rng(0).random((N, 8, 8, 1), dtype=np.float32)
    np.savez(path, x_test=x, y_test=y)
    return path


BAD_LABELS = {
    "one-hot of the wrong width": (np.eye(7, dtype=np.float32)[Y % 7], "7 values per sample"),
    "strings": (np.array([f"c{v}" for v in Y]), "holds strings"),
    "3-D of the wrong size": (np.zeros((N, 2, 3), np.float32), "6 values per sample"),
    "NaN": (np.where(Y == 3, np.nan, Y).astype(np.float32), "NaN or inf"),
    "not class indices": (Y + 0.5, "not class indices 0..9"),
    "out of range": (Y + 5, "not class indices 0..9"),
    "wrong count": (Y[:N - 2], "sample counts differ"),
}


@pytest.mark.parametrize("case", list(BAD_LABELS))
def test_bad_labels_are_one_error_and_nothing_is_written(case: str, tmp_path: Path) -> None:
    y, needle = BAD_LABELS[case]
    out = tmp_path / "out"
    with pytest.raises(TinyDeployError) as err:
        validate(DIGITS, _npz(tmp_path / "d.npz", y), out, board="sim")
    assert err.value.code == "bad_data" and needle in str(err.value), str(err.value)
    assert not out.exists()


@pytest.mark.parametrize("y", [Y, np.eye(10, dtype=np.float32)[Y][:, None, :]],
                         ids=["indices", "one-hot as [N, 1, 10]"])
def test_good_labels_in_any_layout_pass(y: np.ndarray, tmp_path: Path) -> None:
    r = validate(DIGITS, _npz(tmp_path / "d.npz", y), tmp_path / "out", board="sim")
    assert r.passed and "accuracy_device" in r.metrics


def _cli(*args: str) -> tuple[int, list[str]]:
    """Run the CLI (-q: warnings and errors only) -> (exit code, stderr lines)."""
    proc = subprocess.run([sys.executable, "-m", "tinydeploy.cli", *args, "-q"],
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stderr.strip().splitlines()


def test_bad_labels_on_the_command_line(tmp_path: Path) -> None:
    data = _npz(tmp_path / "d.npz", BAD_LABELS["strings"][0])
    code, err = _cli("validate", str(DIGITS), "--data", str(data), "--board", "sim",
                     "--out", str(tmp_path / "out"))
    assert code == 2 and len(err) == 1 and err[0].startswith("error: bad data file"), err
    assert not (tmp_path / "out").exists()


def _fail_writes(monkeypatch: pytest.MonkeyPatch, under: Path, code: int) -> None:
    """Every file or folder created below ``under`` fails with ``code``."""
    real_open, real_mkdir = os.open, os.mkdir

    def guarded(path: str | os.PathLike, *args: object, **kw: object) -> int:
        if str(path).startswith(str(under)):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, *args, **kw)  # type: ignore[arg-type]

    def guarded_mkdir(path: str | os.PathLike, *args: object, **kw: object) -> None:
        if str(path).startswith(str(under)):
            raise OSError(code, os.strerror(code), str(path))
        real_mkdir(path, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", guarded)
    monkeypatch.setattr(os, "mkdir", guarded_mkdir)


def test_read_only_out_is_one_error_patched(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    data = _npz(tmp_path / "d.npz", Y)
    ro = tmp_path / "ro"
    _fail_writes(monkeypatch, ro, errno.EROFS)
    with pytest.raises(TinyDeployError) as err:
        validate(DIGITS, data, ro / "v", board="sim")
    assert err.value.code == "io_error" and "read-only" in str(err.value)
    assert not ro.exists()


def test_full_disk_generate_is_one_error_patched(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "fw"
    real_write = Path.write_text
    budget = [20_000]  # characters the "disk" takes

    def write_text(self: Path, data: str, *args: object, **kw: object) -> int:
        budget[0] -= len(data)
        if budget[0] < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write(self, data, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", write_text)
    with pytest.raises(TinyDeployError) as err:
        render.generate(DIGITS, out, boards=["nano33ble"], arena=8000)
    assert err.value.code == "io_error" and "no space left" in str(err.value)
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.fixture
def tmpfs(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Mount a small tmpfs: ``mount(options)`` -> its folder (root only, else skipped)."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        mnt = tmp_path / f"mnt{len(mounted)}"
        mnt.mkdir()
        if os.geteuid() != 0 or subprocess.run(
                ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)],
                capture_output=True).returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounted.append(mnt)
        return mnt

    try:
        yield mount
    finally:
        for mnt in mounted:
            subprocess.run(["umount", str(mnt)], capture_output=True)


def test_validate_onto_a_read_only_filesystem(tmpfs, tmp_path: Path) -> None:  # noqa: ANN001
    ro = tmpfs("ro,size=64k")
    data = _npz(tmp_path / "d.npz", Y)
    for out in (ro / "v", ro):  # a new folder on it, and the mount point itself
        code, err = _cli("validate", str(DIGITS), "--data", str(data), "--board", "sim",
                         "--out", str(out))
        assert code == 2 and len(err) == 1 and "read-only" in err[0], err
    assert list(ro.iterdir()) == []


def test_generate_onto_a_full_filesystem(tmpfs) -> None:  # noqa: ANN001
    full = tmpfs("size=24k")
    code, err = _cli("generate", str(DIGITS), "--board", "nano33ble", "--out",
                     str(full / "fw"))
    assert code == 2 and len(err) == 1 and "no space left" in err[0], err
    assert list(full.iterdir()) == []
