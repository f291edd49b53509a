"""The PlatformIO side shared by building and flashing: where ``pio`` is, the project's
environment for a board, and a check that the project has it.

:mod:`tinydeploy.device.building` and :mod:`tinydeploy.device.flashing` both import from
here; flashing imports building (it compiles before it uploads), never the other way.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import shutil
import sys
from pathlib import Path

from ..boards import Board
from ..errors import TinyDeployError
from ..install_hints import PLATFORMIO


def board_env(board: Board) -> str:
    """The PlatformIO environment the generated project has for this board (its id)."""
    return board.id


def pio_command() -> list[str]:
    """The PlatformIO executable (``pio``/``platformio`` on PATH or beside this Python)."""
    for name in ("pio", "platformio"):
        found = shutil.which(name)
        if found:
            return [found]
    bindir = Path(sys.executable).parent
    for name in ("pio", "platformio"):
        candidate = bindir / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return [str(candidate)]
    if importlib.util.find_spec("platformio") is not None:
        return [sys.executable, "-m", "platformio"]
    raise TinyDeployError("tool_missing", tool="PlatformIO (pio)",
                          fix=PLATFORMIO)


def check_project(project: Path, env: str) -> Path:
    ini = project / "platformio.ini"
    if not project.is_dir():
        raise TinyDeployError("file_not_found", what="PlatformIO project folder", path=project)
    if not ini.is_file():
        raise TinyDeployError("bad_argument", problem=f"{project} has no platformio.ini",
                              fix="pass the folder made by `tinydeploy generate --format "
                                  "platformio`")
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(ini, encoding="utf-8")
    except configparser.Error as exc:
        raise TinyDeployError("bad_argument", problem=f"{ini} is not readable ({exc})",
                              fix="regenerate the project with `tinydeploy generate`") from exc
    if f"env:{env}" not in parser.sections():
        envs = [s[4:] for s in parser.sections() if s.startswith("env:")]
        have = ", ".join(envs) or "none"
        raise TinyDeployError("bad_argument", problem=f"{ini} has no [env:{env}] (it has {have})",
                              fix=f"generate the project for this board: tinydeploy generate "
                                  f"MODEL --board {env}")
    return ini
