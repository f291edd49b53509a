"""Build and upload a generated PlatformIO project: ``pio run -e ENV -t upload``.

Everything that can be checked without hanging is checked first, each with one clear error:
the project folder has a ``platformio.ini`` with the board's ``[env:ENV]``, PlatformIO and
the env's packages are installed, the project compiles (:func:`tinydeploy.device.building.build`,
output streamed live -- before any port is looked for), and the serial port exists and
opens (found by the board's USB VID/PID when not given). Only then does the bounded
upload start.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..boards import Board, get_board
from ..errors import TinyDeployError
from ..install_hints import PLATFORMIO
from ..log import log, stage
from .pio import board_env, check_project, pio_command

UPLOAD_TIMEOUT_S = 900.0  # a first build downloads toolchains + compiles TFLM
TAIL_LINES = 15


@dataclass
class FlashResult:
    project: Path
    board: str
    env: str
    port: str
    command: list[str]
    seconds: float
    output_tail: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"flashed {self.project} (env {self.env}) to {self.board} on {self.port} "
                f"in {self.seconds:.1f} s")

    def to_dict(self) -> dict[str, Any]:
        return {"project": str(Path(self.project).resolve()), "board": self.board, "env": self.env,
                "port": self.port, "command": self.command, "seconds": self.seconds}


def find_port(board: str | Board) -> str:
    """The first serial port whose USB VID/PID belongs to the board."""
    from serial.tools import list_ports

    b = get_board(board)
    ids = set(b.usb_ids)
    ports = list(list_ports.comports())
    matches = [p.device for p in ports if p.vid is not None and (p.vid, p.pid) in ids]
    if not matches:
        seen = ", ".join(f"{p.device} ({p.vid:04x}:{p.pid:04x})" if p.vid is not None
                         else p.device for p in ports) or "none"
        wanted = ", ".join(f"{v:04x}:{p:04x}" for v, p in sorted(ids)) or "no USB ids known"
        raise TinyDeployError("no_port", board=b.id,
                              fix=f"plug the board in, or pass --port (looked for {wanted}; "
                                  f"ports seen: {seen})")
    if len(matches) > 1:
        log.warning("several ports match %s: %s; using %s", b.id,
                    ", ".join(matches), matches[0])
    return matches[0]


def check_port(port: str) -> None:
    """Open and close the port once, so a wrong or busy port fails now, not in pio."""
    import serial

    try:
        with serial.Serial(port, timeout=0.1, write_timeout=0.5):
            pass
    except (OSError, ValueError, serial.SerialException) as exc:
        raise TinyDeployError("port_error", port=port, problem=str(exc)) from exc


def _tail(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()][-TAIL_LINES:]


def flash(project: str | Path, board: str | Board, port: str | None = None,
          timeout: float = UPLOAD_TIMEOUT_S,
          echo: Callable[[str], None] | None = None) -> FlashResult:
    """Build, then upload ``project`` for ``board`` over ``port`` (found by VID/PID if None).

    Args:
        project: a generated PlatformIO project folder (with ``platformio.ini``).
        board: board id or :class:`Board` (its ``[env:ID]`` is built).
        port: serial port; None finds the board by its USB VID/PID.
        timeout: seconds the build and upload may take.
        echo: gets the build output line by line (default: stdout).

    Returns:
        A :class:`FlashResult` (port, seconds, PlatformIO output tail).

    Raises:
        TinyDeployError: a board that is not flashed (``bad_argument``), no PlatformIO
            (``tool_missing``, exit 7), no or a wrong port (``no_port``/``port_error``,
            exit 5), build or upload failure (``build_failed``, exit 8).
    """
    b = get_board(board)
    if not b.uploadable:
        raise TinyDeployError("bad_argument", problem=f"board {b.id} is not flashed",
                              fix="validate it directly: tinydeploy validate MODEL --board "
                                  f"{b.id} ...")
    project = Path(project)
    env = board_env(b)
    check_project(project, env)
    pio = pio_command()
    from .building import build

    build(project, b, echo=echo)  # compile errors show without a board attached
    if port is None:
        port = find_port(b)
    check_port(port)
    cmd = [*pio, "run", "-d", str(project), "-e", env, "-t", "upload", "--upload-port", port]
    stage("flash", " ".join(cmd))
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (
            exc.stdout or "")
        raise TinyDeployError("build_failed", what="pio run (upload)", rc="timeout",
                              tail=" | ".join(_tail(out)[-3:]) or f"no result in {timeout:.0f} s",
                              fix="check the board is in bootloader mode and the port") from exc
    except OSError as exc:
        raise TinyDeployError("tool_missing", tool=pio[0],
                              fix=f"{PLATFORMIO} ({exc})") from exc
    seconds = time.monotonic() - start
    tail = _tail((proc.stdout or "") + "\n" + (proc.stderr or ""))
    if proc.returncode != 0:
        raise TinyDeployError("build_failed", what="pio run (upload)", rc=proc.returncode,
                              tail=" | ".join(tail[-3:]),
                              fix=f"run `{' '.join(cmd)}` to see the full log")
    return FlashResult(project=project, board=b.id, env=env, port=port, command=cmd,
                       seconds=seconds, output_tail=tail)
