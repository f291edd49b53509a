"""Compile a generated PlatformIO project without a board: ``pio run -d DIR -e BOARD``.

``build`` checks what it can offline first, each with one clear error: the project has the
board's ``[env:BOARD]`` (exit 2), PlatformIO is installed (exit 7), the env's development
platform (which brings the toolchain) is installed (exit 7, naming ``pio pkg install -d
DIR -e BOARD``, the one command that installs platform, toolchain and ``lib_deps`` with
network access). Without the platform ``pio run`` would try to download it, which hangs
for a minute and fails where the PlatformIO registry is unreachable. Then ``pio run`` runs
with its output streamed live, bounded by a timeout (it installs a missing ``lib_deps``
library itself when online); a failure whose output says a package or compiler is missing
is again exit 7, any other failure exit 8 with the last lines.

``tinydeploy flash`` calls ``build`` before it looks for a serial port, so a project that
does not compile fails the same way with or without a board attached.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..boards import Board, get_board
from ..errors import TinyDeployError
from ..install_hints import PLATFORMIO
from ..log import stage
from .pio import board_env, check_project, pio_command

BUILD_TIMEOUT_S = 1800.0  # a first build compiles all of TFLM
TAIL_LINES = 15
FIRMWARE_NAMES = ("firmware.bin", "firmware.hex", "firmware.uf2", "firmware.elf")
# pio output that means a package (platform, toolchain, library) or compiler is missing
_MISSING = re.compile(
    r"UnknownPackageError|UnknownPlatform|Unknown development platform|"
    r"Could not find the package|HTTPClientError|MissingPackageManifestError|"
    r"(gcc|g\+\+|cc1plus)[^\n]*(not found|No such file or directory)", re.IGNORECASE)

Echo = Callable[[str], None]


@dataclass
class BuildResult:
    project: Path
    board: str
    env: str
    command: list[str]
    seconds: float
    firmware: Path | None = None
    output_tail: list[str] = field(default_factory=list)

    def summary(self) -> str:
        where = f": {self.firmware}" if self.firmware else ""
        return f"built {self.project} (env {self.env}) in {self.seconds:.1f} s{where}"

    def to_dict(self) -> dict[str, Any]:
        return {"project": str(self.project), "board": self.board, "env": self.env,
                "command": self.command, "seconds": self.seconds,
                "firmware": str(self.firmware) if self.firmware else None}


def _echo(line: str) -> None:
    sys.stdout.write(line)
    sys.stdout.flush()


# --- offline checks ------------------------------------------------------------------------
def core_dir() -> Path:
    """PlatformIO's core folder (``PLATFORMIO_CORE_DIR``, default ``~/.platformio``)."""
    return Path(os.environ.get("PLATFORMIO_CORE_DIR") or Path.home() / ".platformio")


def platform_installed(name: str) -> bool:
    """Whether development platform ``name`` is installed (``platforms/NAME[@...]``)."""
    pdir = Path(os.environ.get("PLATFORMIO_PLATFORMS_DIR") or core_dir() / "platforms")
    if not pdir.is_dir():
        return False
    return any(p.is_dir() and (p.name == name or p.name.startswith(name + "@"))
               for p in pdir.iterdir())


def _env_options(ini: Path, env: str) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read(ini, encoding="utf-8")
    return dict(parser[f"env:{env}"])


def _lib_name(dep: str) -> str:
    """``owner/Name@1.2.3`` -> ``Name`` (the folder PlatformIO installs it into)."""
    return dep.split("@", 1)[0].rsplit("/", 1)[-1].strip()


def missing_libraries(project: Path, env: str, ini: Path) -> list[str]:
    """``lib_deps`` entries of ``env`` not yet installed in ``.pio/libdeps/ENV``."""
    libdeps = project / ".pio" / "libdeps" / env
    have = {p.name.lower() for p in libdeps.iterdir()} if libdeps.is_dir() else set()
    deps = (d.strip() for d in _env_options(ini, env).get("lib_deps", "").splitlines())
    return [d for d in deps if d and not d.startswith((";", "#"))
            and _lib_name(d).lower() not in have]


def check_packages(project: Path, env: str, ini: Path) -> None:
    """Refuse (exit 7) a project whose development platform is not installed."""
    platform = _env_options(ini, env).get("platform", "").strip()
    if platform and not re.search(r"[/:]", platform) and not platform_installed(
            platform.split("@", 1)[0]):
        raise TinyDeployError("tool_missing",
                              tool=f"PlatformIO platform {platform} (the toolchain of {env})",
                              fix=f"install it once with network access: pio pkg install -d "
                                  f"{project} -e {env}")


# --- running pio ---------------------------------------------------------------------------
def run_streamed(cmd: list[str], timeout: float, echo: Echo | None = None,
                 cwd: Path | None = None) -> tuple[int | None, list[str]]:
    """Run ``cmd``, passing each output line to ``echo`` as it comes.

    Returns (exit code, last lines); the exit code is None if ``timeout`` seconds passed
    (the process is killed). Ctrl-C kills the process and re-raises. ``OSError`` if the
    executable cannot start.
    """
    out = echo or _echo
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    # its own process group: a timeout or Ctrl-C stops pio's compilers too
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", bufsize=1, cwd=cwd, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    timed_out = threading.Event()

    def kill_group() -> None:
        with contextlib.suppress(OSError):
            if hasattr(os, "killpg"):
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()

    def kill() -> None:
        timed_out.set()
        kill_group()

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            out(line)
            if line.strip():
                tail.append(line.rstrip())
        rc = proc.wait()
    except BaseException:
        kill_group()
        proc.wait()
        raise
    finally:
        timer.cancel()
    return (None if timed_out.is_set() else rc), list(tail)


def firmware_file(project: Path, env: str) -> Path | None:
    """The image ``pio run`` wrote for ``env`` (``.pio/build/ENV/firmware.*``), if any."""
    build_dir = project / ".pio" / "build" / env
    return next((build_dir / n for n in FIRMWARE_NAMES if (build_dir / n).is_file()), None)


def build(project: str | Path, board: str | Board, timeout: float = BUILD_TIMEOUT_S,
          echo: Echo | None = None) -> BuildResult:
    """Compile the generated PlatformIO ``project`` for ``board`` (``pio run -e BOARD``).

    Args:
        project: the folder with ``platformio.ini``.
        board: a board id (its ``[env:ID]`` is built).
        timeout: seconds for the whole build.
        echo: receives each output line (default: stdout).

    Returns:
        A :class:`BuildResult`.

    Raises:
        TinyDeployError: ``bad_argument`` (no such env / not an uploadable board),
            ``tool_missing`` (PlatformIO, platform, toolchain or library),
            ``build_failed`` (compile error or timeout).
    """
    b = get_board(board)
    if not b.uploadable:
        raise TinyDeployError("bad_argument", problem=f"board {b.id} has no PlatformIO build",
                              fix=f"validate it directly: tinydeploy validate MODEL --board {b.id}")
    project = Path(project)
    env = board_env(b)
    ini = check_project(project, env)
    pio = pio_command()
    check_packages(project, env, ini)
    missing = missing_libraries(project, env, ini)
    cmd = [*pio, "run", "-d", str(project), "-e", env]
    stage("build", " ".join(cmd) + (f" (installs {', '.join(missing)})" if missing else ""))
    start = time.monotonic()
    try:
        rc, tail = run_streamed(cmd, timeout, echo)
    except OSError as exc:
        raise TinyDeployError("tool_missing", tool=pio[0],
                              fix=f"{PLATFORMIO} ({exc})") from exc
    seconds = time.monotonic() - start
    if rc is None:
        raise TinyDeployError("build_failed", what="pio run", rc="timeout",
                              tail=" | ".join(tail[-3:]) or f"no result in {timeout:.0f} s",
                              fix=f"run `{' '.join(cmd)}` to see where it stops")
    if rc != 0:
        text = "\n".join(tail)
        if _MISSING.search(text):
            what = ", ".join(missing) or f"a PlatformIO package for env {env}"
            raise TinyDeployError("tool_missing", tool=what,
                                  fix=f"install it once with network access: pio pkg install "
                                      f"-d {project} -e {env} ({tail[-1][:120]})")
        raise TinyDeployError("build_failed", what="pio run", rc=rc,
                              tail=" | ".join(tail[-3:]),
                              fix=f"run `{' '.join(cmd)}` to see the full log")
    return BuildResult(project=project, board=b.id, env=env, command=cmd, seconds=seconds,
                       firmware=firmware_file(project, env), output_tail=tail)
