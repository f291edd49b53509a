"""A child program serving the device protocol on a pseudo-terminal.

The simulated board (``python -m tinydeploy.device.sim``) and the native board (``td_native``)
both open a pty and print ``PTY /dev/pts/N`` on stdout; ``wait_for_pty`` also takes another
line pattern (e.g. QEMU's). ``spawn(cmd, ...)`` starts such a program and waits for that
line; ``PtyProcess`` is the running child (``.port``, ``.running``, ``.stop()``, context
manager).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import subprocess
import time
from types import TracebackType
from typing import TypeVar

from ..errors import TinyDeployError

_P = TypeVar("_P", bound="PtyProcess")


PTY_LINE = re.compile(r"^PTY (.*)$", re.M)


def wait_for_pty(proc: subprocess.Popen[bytes], timeout: float,
                 pattern: re.Pattern[str] = PTY_LINE) -> tuple[str | None, str]:
    """Read the child's stdout until a complete line matches ``pattern`` (group 1 = the pty
    path); return (path or ``None`` if the child exits or times out, the output so far)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    buf = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
            text = buf.decode(errors="replace")
            m = pattern.search(text[:text.rfind("\n") + 1])
            if m:
                return m.group(1).strip(), text
        elif proc.poll() is not None:
            break
    return None, buf.decode(errors="replace")


def read_pty_line(proc: subprocess.Popen[bytes], timeout: float) -> str | None:
    """Wait for ``PTY /dev/...`` on the child's stdout; ``None`` if it exits or times out."""
    return wait_for_pty(proc, timeout)[0]


def spawn(cmd: list[str], timeout: float, name: str, what: str,
          pattern: re.Pattern[str] = PTY_LINE, merge_stderr: bool = False,
          ) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``cmd`` and wait for the stdout line ``pattern`` matches (``merge_stderr`` for a
    program that prints it on stderr); ``port_error`` (port ``name``, saying ``what`` did not
    start) if it never comes."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT if merge_stderr else None)
    port, said = wait_for_pty(proc, timeout, pattern)
    if port is None:
        with contextlib.suppress(Exception):
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdout:
            proc.stdout.close()
        tail = said.strip()[-200:] or "no output"
        raise TinyDeployError("port_error", port=name,
                              problem=f"{what} did not start (exit {proc.poll()}): {tail}")
    return proc, port


class PtyProcess:
    """A running device program; ``port`` is its pseudo-terminal."""

    def __init__(self, proc: subprocess.Popen[bytes], port: str) -> None:
        self.proc = proc
        self.port = port

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """Terminate the program (kill it after 5 s)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()

    def close(self) -> None:
        """Stop the program and release what it used (subclasses extend this)."""
        self.stop()

    def __enter__(self: _P) -> _P:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
