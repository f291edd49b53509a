"""The Arm tools the Cortex-M builds and runs share (``arm-none-eabi-size``,
``qemu-system-arm``): finding them (``tool_missing`` naming the install otherwise),
running a build step (``build_failed`` with the output's tail) and an ELF's section sizes.
Below every module that builds or boots Cortex-M firmware (``qemu``, ``tflm_firmware``,
``arena.measure``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from ..errors import TinyDeployError
from ..install_hints import ARM_QEMU

BUILD_TIMEOUT = 300.0
APT_FIX = ARM_QEMU  # apt and Homebrew
SIZE = "arm-none-eabi-size"
QEMU = "qemu-system-arm"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise TinyDeployError("tool_missing", tool=name, fix=APT_FIX)
    return path


def run_tool(cmd: list[str], what: str, timeout: float = BUILD_TIMEOUT, log_file: Any = None,
             fix: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a build tool; a timeout, a missing program or a failure is one ``build_failed``
    line (the first error lines as its tail). ``log_file``: the command and its output are
    appended there (and the fix points at it)."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        raise TinyDeployError("build_failed", what=what, rc="timeout",
                              tail=f"no result after {timeout:.0f} s",
                              fix="check the machine load and try again") from err
    except OSError as err:
        raise TinyDeployError("build_failed", what=what, rc="?", tail=str(err),
                              fix="check the toolchain install") from err
    if log_file is not None:
        log_file.write(" ".join(cmd) + "\n" + proc.stdout + proc.stderr)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln] or lines[-5:]
        if fix is None:
            fix = ("report this model to tinydeploy" if log_file is None
                   else f"see {getattr(log_file, 'name', 'the build log')}")
        raise TinyDeployError("build_failed", what=what, rc=proc.returncode,
                              tail=" | ".join(errors[:5])[:600], fix=fix)
    return proc


_run = run_tool  # the firmware builds' name for it


def elf_sizes(elf: Path) -> dict[str, int]:
    """``arm-none-eabi-size`` (Berkeley format) of an ELF: text, data, bss bytes."""
    out = _run([_tool(SIZE), str(elf)], "arm-none-eabi-size").stdout.splitlines()
    fields = out[-1].split() if out else []
    if len(fields) < 3 or not all(f.isdigit() for f in fields[:3]):
        raise TinyDeployError("build_failed", what="arm-none-eabi-size", rc="?",
                              tail=" | ".join(out[-2:]), fix="check the binutils install")
    return {"text": int(fields[0]), "data": int(fields[1]), "bss": int(fields[2])}
