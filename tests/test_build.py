"""tinydeploy build: pio run without a board, live output, clear errors; flash builds first.

A fake ``pio`` executable on PATH stands in for PlatformIO (the real one needs the
registry); it logs its arguments, prints lines with pauses, may write a firmware file and
exits with the code it is told.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import pytest
import serial.tools.list_ports

from tinydeploy import render
from tinydeploy.cli import main
from tinydeploy.device import building
from tinydeploy.device import flashing as fl
from tinydeploy.device import pio as piomod
from tinydeploy.errors import TinyDeployError

DATA = Path(__file__).parent / "data"
FAKE_PIO = """#!/bin/sh
echo "$@" >> "$FAKE_PIO_LOG"
echo "Processing $5 (platform: fake)"
sleep "${FAKE_PIO_SLEEP:-0}"
printf '%s\\n' "${FAKE_PIO_OUTPUT:-Compiling .pio/build/$5/src/td_tflm_app.cpp.o}"
if [ "${FAKE_PIO_RC:-0}" = 0 ] && [ "$1" = run ]; then
  mkdir -p "$3/.pio/build/$5" && : > "$3/.pio/build/$5/firmware.hex"
  echo "========== [SUCCESS] =========="
fi
exit "${FAKE_PIO_RC:-0}"
"""


@pytest.fixture
def pio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake pio first on PATH; returns its log file."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "pio"
    exe.write_text(FAKE_PIO)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "pio.log"
    log.write_text("")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PIO_LOG", str(log))
    monkeypatch.setenv("PLATFORMIO_CORE_DIR", str(tmp_path / "core"))
    monkeypatch.delenv("PLATFORMIO_PLATFORMS_DIR", raising=False)
    return log


def _calls(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()]


def _project(tmp_path: Path, board: str = "nano33ble", installed: bool = True) -> Path:
    """A generated PlatformIO project, its platform and library installed (or not)."""
    out = tmp_path / "fw"
    render.generate(DATA / "sine_mlp.tflite", out, boards=[board], arena=4096, fmt="platformio")
    if installed:
        from tinydeploy.boards import BOARDS

        b = BOARDS[board]
        (tmp_path / "core" / "platforms" / str(b.pio_platform)).mkdir(parents=True)
        (out / ".pio" / "libdeps" / board / str(b.tflm_arduino_lib)).mkdir(parents=True)
    return out


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    out = capsys.readouterr()
    lines = [line for line in out.err.splitlines() + out.out.splitlines()
             if line.startswith("error:")]
    assert len(lines) == 1, out
    return lines[0]


def test_build_runs_pio_and_streams_its_output(tmp_path: Path, pio: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    proj = _project(tmp_path)
    monkeypatch.setenv("FAKE_PIO_SLEEP", "0.6")
    seen: list[tuple[float, str]] = []
    start = time.monotonic()
    res = building.build(proj, "nano33ble", echo=lambda line: seen.append(
        (time.monotonic() - start, line.rstrip())))
    end = time.monotonic() - start
    assert _calls(pio) == [["run", "-d", str(proj), "-e", "nano33ble"]]
    assert [s for _, s in seen][0] == "Processing nano33ble (platform: fake)"
    assert seen[0][0] < end - 0.4  # the first line arrived while pio was still running
    assert res.firmware == proj / ".pio" / "build" / "nano33ble" / "firmware.hex"
    assert "[SUCCESS]" in res.output_tail[-1] and "nano33ble" in res.summary()


def test_cli_build(tmp_path: Path, pio: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proj = _project(tmp_path)
    assert main(["build", str(proj), "--board", "nano33ble"]) == 0
    out = capsys.readouterr().out
    assert "Processing nano33ble" in out and "[SUCCESS]" in out  # pio's own output
    assert f"built {proj} (env nano33ble)" in out


def test_compile_error_is_exit_8_with_the_error(tmp_path: Path, pio: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    proj = _project(tmp_path)
    monkeypatch.setenv("FAKE_PIO_RC", "1")
    monkeypatch.setenv("FAKE_PIO_OUTPUT", "src/td_tflm_app.cpp:12:3: error: 'Boom' was "
                                          "not declared in this scope")
    assert main(["build", str(proj), "--board", "nano33ble"]) == 8
    line = _one_error_line(capsys)
    assert "'Boom' was not declared" in line and "exit 1" in line


def test_missing_platformio_is_exit_7(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    proj = _project(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "nobin" / "python"))
    monkeypatch.setattr(piomod.importlib.util, "find_spec", lambda name: None)
    assert main(["build", str(proj), "--board", "nano33ble"]) == 7
    line = _one_error_line(capsys)
    assert "PlatformIO" in line and "pip install platformio" in line


def test_missing_platform_is_exit_7_without_running_pio(
        tmp_path: Path, pio: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proj = _project(tmp_path)
    (tmp_path / "core" / "platforms" / "nordicnrf52").rmdir()
    assert main(["build", str(proj), "--board", "nano33ble"]) == 7
    line = _one_error_line(capsys)
    assert f"pio pkg install -d {proj} -e nano33ble" in line and "nordicnrf52" in line
    assert _calls(pio) == []  # pio never ran (it would hang on the registry)
    # an installed platform under a versioned folder name counts
    (tmp_path / "core" / "platforms" / "nordicnrf52@10.3.0").mkdir()
    assert main(["build", str(proj), "--board", "nano33ble"]) == 0


def test_library_pio_cannot_download_is_exit_7(tmp_path: Path, pio: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    proj = _project(tmp_path)
    (proj / ".pio" / "libdeps" / "nano33ble" / "Chirale_TensorFLowLite").rmdir()
    monkeypatch.setenv("FAKE_PIO_RC", "1")
    monkeypatch.setenv("FAKE_PIO_OUTPUT", "HTTPClientError: could not reach the registry")
    assert main(["build", str(proj), "--board", "nano33ble"]) == 7
    line = _one_error_line(capsys)
    assert "spaziochirale/Chirale_TensorFLowLite@2.0.0 not found" in line
    assert f"pio pkg install -d {proj} -e nano33ble" in line


def test_missing_toolchain_in_pio_output_is_exit_7(tmp_path: Path, pio: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    proj = _project(tmp_path)
    monkeypatch.setenv("FAKE_PIO_RC", "1")
    monkeypatch.setenv("FAKE_PIO_OUTPUT", "UnknownPackageError: Could not find the package "
                                          "with 'platformio/toolchain-gccarmnoneeabi' requirements")
    with pytest.raises(TinyDeployError) as exc:
        building.build(proj, "nano33ble", echo=lambda line: None)
    assert exc.value.code == "tool_missing" and exc.value.exit_code == 7
    assert "pio pkg install" in str(exc.value)


def test_build_timeout_kills_pio(tmp_path: Path, pio: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    proj = _project(tmp_path)
    monkeypatch.setenv("FAKE_PIO_SLEEP", "5")
    start = time.monotonic()
    with pytest.raises(TinyDeployError) as exc:
        building.build(proj, "nano33ble", timeout=0.5, echo=lambda line: None)
    assert exc.value.code == "build_failed" and "timeout" in str(exc.value)
    assert time.monotonic() - start < 4


def test_pseudo_board_and_missing_env(tmp_path: Path, pio: Path) -> None:
    proj = _project(tmp_path)
    with pytest.raises(TinyDeployError) as exc:
        building.build(proj, "sim")
    assert exc.value.code == "bad_argument"
    with pytest.raises(TinyDeployError) as exc:
        building.build(proj, "teensy41")
    assert exc.value.code == "bad_argument" and "[env:teensy41]" in str(exc.value)
    assert _calls(pio) == []


# --- flash builds before it looks for a port --------------------------------------------------
def test_flash_builds_before_looking_for_a_port(tmp_path: Path, pio: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    proj = _project(tmp_path)
    looked: list[int] = []

    def comports() -> list[object]:
        looked.append(len(_calls(pio)))  # how many pio runs happened before the port search
        return []

    monkeypatch.setattr(serial.tools.list_ports, "comports", comports)
    with pytest.raises(TinyDeployError) as exc:
        fl.flash(proj, "nano33ble", echo=lambda line: None)
    assert exc.value.code == "no_port"
    assert looked == [1] and _calls(pio) == [["run", "-d", str(proj), "-e", "nano33ble"]]


def test_flash_with_a_compile_error_never_looks_for_a_port(
        tmp_path: Path, pio: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proj = _project(tmp_path)
    monkeypatch.setenv("FAKE_PIO_RC", "1")
    monkeypatch.setenv("FAKE_PIO_OUTPUT", "error: boom")

    def comports() -> list[object]:
        raise AssertionError("looked for a port before the build passed")

    monkeypatch.setattr(serial.tools.list_ports, "comports", comports)
    with pytest.raises(TinyDeployError) as exc:
        fl.flash(proj, "nano33ble", echo=lambda line: None)
    assert exc.value.code == "build_failed" and "boom" in str(exc.value)
    assert len(_calls(pio)) == 1  # the build only, no upload
