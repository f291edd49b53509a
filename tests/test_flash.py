"""flash: the pio command line, fail-fast checks, port discovery by USB VID/PID.

subprocess, shutil.which and serial.tools.list_ports.comports are replaced: nothing here
runs PlatformIO or needs a board.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import serial.tools.list_ports

from tinydeploy.boards import get_board
from tinydeploy.device import building, pio
from tinydeploy.device import flashing as fl
from tinydeploy.errors import TinyDeployError


def _project(tmp_path: Path, env: str = "nano33ble") -> Path:
    proj = tmp_path / "fw"
    proj.mkdir()
    (proj / "platformio.ini").write_text(f"[platformio]\nsrc_dir = src\n\n[env:{env}]\n"
                                         "platform = nordicnrf52\nboard = nano33ble\n")
    return proj


def _port(device: str, vid: int | None, pid: int | None) -> SimpleNamespace:
    return SimpleNamespace(device=device, vid=vid, pid=pid, description="")


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record subprocess.run calls; pretend pio is on PATH and the port opens."""
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        assert kw.get("timeout"), "pio run must have a bounded timeout"
        return subprocess.CompletedProcess(cmd, 0, stdout="Uploading...\nSUCCESS\n", stderr="")

    monkeypatch.setattr(fl.subprocess, "run", fake_run)
    monkeypatch.setattr(pio.shutil, "which",
                        lambda name: "/opt/pio/bin/pio" if name == "pio" else None)
    monkeypatch.setattr(fl, "check_port", lambda port: None)
    # the build before the upload (tests/test_build.py runs it with a fake pio)
    monkeypatch.setattr(building, "build", lambda project, board, **kw: calls.append(
        ["build", str(project), getattr(board, "id", board)]))
    return calls


def test_flash_builds_the_pio_command(tmp_path: Path, runs: list[list[str]]) -> None:
    proj = _project(tmp_path)
    result = fl.flash(proj, "nano33ble", port="/dev/ttyACM7")
    assert runs == [["build", str(proj), "nano33ble"],
                    ["/opt/pio/bin/pio", "run", "-d", str(proj), "-e", "nano33ble",
                     "-t", "upload", "--upload-port", "/dev/ttyACM7"]]
    assert result.port == "/dev/ttyACM7" and result.env == "nano33ble"
    assert "nano33ble" in result.summary()


def test_flash_finds_the_port_by_vid_pid(tmp_path: Path, runs: list[list[str]],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    vid, pid = get_board("nano33ble").usb_ids[0]
    monkeypatch.setattr(serial.tools.list_ports, "comports", lambda: [
        _port("/dev/ttyS0", None, None),
        _port("/dev/ttyUSB0", 0x0403, 0x6001),  # some FTDI adapter
        _port("/dev/ttyACM3", vid, pid),
    ])
    result = fl.flash(_project(tmp_path), "nano33ble")
    assert result.port == "/dev/ttyACM3"
    assert runs[-1][-2:] == ["--upload-port", "/dev/ttyACM3"]


def test_find_port_picks_the_board_not_another(monkeypatch: pytest.MonkeyPatch) -> None:
    esp = get_board("esp32-s3").usb_ids[0]
    pico = get_board("rpipico").usb_ids[0]
    monkeypatch.setattr(serial.tools.list_ports, "comports", lambda: [
        _port("/dev/ttyACM0", *esp), _port("/dev/ttyACM1", *pico)])
    assert fl.find_port("rpipico") == "/dev/ttyACM1"
    assert fl.find_port("esp32-s3") == "/dev/ttyACM0"


def test_no_port_fails_fast(tmp_path: Path, runs: list[list[str]],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serial.tools.list_ports, "comports",
                        lambda: [_port("/dev/ttyUSB0", 0x0403, 0x6001)])
    with pytest.raises(TinyDeployError) as err:
        fl.flash(_project(tmp_path), "nano33ble")
    assert err.value.code == "no_port" and "--port" in str(err.value)
    assert "0403:6001" in str(err.value)  # names what it saw
    assert runs == [["build", str(tmp_path / "fw"), "nano33ble"]]  # built, not uploaded


def test_missing_platformio_fails_fast(tmp_path: Path, runs: list[list[str]],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pio.shutil, "which", lambda name: None)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "nobin" / "python"))
    monkeypatch.setattr(pio.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TinyDeployError) as err:
        fl.flash(_project(tmp_path), "nano33ble", port="/dev/ttyACM0")
    assert err.value.code == "tool_missing" and "platformio" in str(err.value).lower()
    assert runs == []


def test_platformio_module_fallback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(pio.shutil, "which", lambda name: None)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "nobin" / "python"))
    monkeypatch.setattr(pio.importlib.util, "find_spec", lambda name: object())
    assert pio.pio_command() == [sys.executable, "-m", "platformio"]


def test_project_without_env_or_ini_is_refused(tmp_path: Path, runs: list[list[str]]) -> None:
    with pytest.raises(TinyDeployError) as err:
        fl.flash(_project(tmp_path, env="rpipico"), "nano33ble", port="/dev/ttyACM0")
    assert err.value.code == "bad_argument" and "[env:nano33ble]" in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TinyDeployError, match="platformio.ini"):
        fl.flash(empty, "nano33ble", port="/dev/ttyACM0")
    with pytest.raises(TinyDeployError) as err:
        fl.flash(tmp_path / "missing", "nano33ble", port="/dev/ttyACM0")
    assert err.value.code == "file_not_found"
    assert runs == []


def test_unopenable_port_fails_before_pio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          runs: list[list[str]]) -> None:
    monkeypatch.undo()  # real check_port
    monkeypatch.setattr(fl.subprocess, "run", lambda *a, **k: runs.append(a[0]))
    monkeypatch.setattr(pio.shutil, "which", lambda name: "/opt/pio/bin/pio")
    monkeypatch.setattr(building, "build", lambda *a, **k: runs.append(["build"]))
    with pytest.raises(TinyDeployError) as err:
        fl.flash(_project(tmp_path), "nano33ble", port=str(tmp_path / "ttyNOPE"))
    assert err.value.code == "port_error"
    assert runs == [["build"]]  # no upload


def test_pio_failure_and_timeout(tmp_path: Path, runs: list[list[str]],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    proj = _project(tmp_path)

    def failing(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="*** upload failed\n")

    monkeypatch.setattr(fl.subprocess, "run", failing)
    with pytest.raises(TinyDeployError) as err:
        fl.flash(proj, "nano33ble", port="/dev/ttyACM0")
    assert err.value.code == "build_failed" and "upload failed" in str(err.value)

    def hanging(cmd: list[str], **kw: object) -> None:
        raise subprocess.TimeoutExpired(cmd, float(kw["timeout"]))  # type: ignore[arg-type]

    monkeypatch.setattr(fl.subprocess, "run", hanging)
    with pytest.raises(TinyDeployError) as err:
        fl.flash(proj, "nano33ble", port="/dev/ttyACM0", timeout=5)
    assert err.value.code == "build_failed" and "timeout" in str(err.value)


def test_pseudo_boards_are_not_flashed(tmp_path: Path, runs: list[list[str]]) -> None:
    with pytest.raises(TinyDeployError) as err:
        fl.flash(_project(tmp_path, env="sim"), "sim", port="/dev/ttyACM0")
    assert err.value.code == "bad_argument"
    assert runs == []
