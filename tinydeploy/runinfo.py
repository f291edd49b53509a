"""Facts about the current run for reports: the command line, the date, the version.

The CLI records its argument list with :func:`set_command`; called from Python, the
command is ``python <script> ...`` (``sys.argv``), marked as an API call.
"""

from __future__ import annotations

import datetime as _dt
import shlex
import sys

from ._version import __version__

_COMMAND: list[str] | None = None


def set_command(argv: list[str]) -> None:
    """Record the CLI arguments (without the program name) of this run.

    Args:
        argv: the arguments after ``tinydeploy``.
    """
    global _COMMAND
    _COMMAND = ["tinydeploy", *argv]


def command() -> str:
    """The command line of this run, shell-quoted.

    Returns:
        ``tinydeploy ARGS...`` for a CLI run, else ``python ARGV... (Python API)``.
    """
    if _COMMAND is not None:
        return shlex.join(_COMMAND)
    return shlex.join(["python", *sys.argv]) + " (Python API)"


def now_utc() -> str:
    """The current UTC time as ``YYYY-MM-DD HH:MM:SS UTC``."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def header(board: str, runtime: str, sha256: str, model: str) -> dict[str, str]:
    """The report header facts of one run.

    Args:
        board: board id the run used.
        runtime: firmware runtime the device reported (``tflm``, ``c``, ``sim`` ...).
        sha256: model SHA-256 (hex).
        model: model path.

    Returns:
        ``date``, ``tinydeploy`` (version), ``command``, ``board``, ``runtime``, ``model``,
        ``model_sha256``.
    """
    return {"date": now_utc(), "tinydeploy": __version__, "command": command(),
            "board": board, "runtime": runtime, "model": model, "model_sha256": sha256}
