"""Board ``native``: the generated C runtime + the protocol firmware, built with the host C
compiler into a program that serves the device protocol on a pseudo-terminal.

``build_native(facts, workdir)`` generates ``workdir/model/`` (td_model.c + kernels) and
compiles it with ``firmware/td_native_main.c``, ``td_posix.c`` and ``td_protocol.c`` into
``workdir/td_native``. ``start_native(facts, workdir)`` builds, starts the program, waits
for its ``PTY /dev/pts/N`` line and returns a ``NativeProcess`` (context manager, ``.port``,
``.stop()``). A rebuild is skipped when the model and the firmware sources are unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from ..cruntime import generate_c
from ..cruntime.codegen import generator_digest
from ..cruntime.harness import compile_c
from ..cruntime.patch_auto import AUTO, PatchChoice, choice_key
from ..errors import TinyDeployError
from ..facts import ModelFacts, load
from ..log import log
from ..resources import firmware_dir
from .ptyproc import PtyProcess, spawn

if TYPE_CHECKING:
    from .tflm_build import TflmTree

FIRMWARE_SOURCES = ("td_native_main.c", "td_posix.c", "td_protocol.c")
BINARY = "td_native"
START_TIMEOUT = 15.0
NATIVE_FLAGS = ("-std=c99", "-Wall", "-Wextra")


def model_flags(model_dir: Path) -> list[str]:
    """Compiler flags the generated model needs: ``-DTD_HAS_RESET`` when its ``td_model.h``
    declares ``td_reset()`` (stateful models; the firmware then honours the INFER reset
    flag)."""
    header = Path(model_dir) / "td_model.h"
    try:
        text = header.read_text()
    except OSError:
        return []
    # the same value as the header's own #define, if it has one (no redefinition warning)
    m = re.search(r"^[ \t]*#[ \t]*define[ \t]+TD_HAS_RESET\b[ \t]*([^\n]*?)[ \t]*$", text,
                  re.MULTILINE)
    if m:
        return [f"-DTD_HAS_RESET={m.group(1)}"]
    return ["-DTD_HAS_RESET=1"] if re.search(r"\btd_reset\s*\(", text) else []


def _fingerprint(facts: ModelFacts, profile: bool = False, patch: PatchChoice = AUTO) -> str:
    h = hashlib.sha256(facts.sha256.encode())
    h.update(b"profile" if profile else b"")
    h.update(choice_key(patch).encode())  # --patch changes the model code
    h.update(generator_digest().encode())
    fw = firmware_dir()
    for path in sorted(fw.glob("td_*.[ch]")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def build_native(facts: ModelFacts | str | Path | bytes, workdir: Path,
                 profile: bool = False, patch: PatchChoice = AUTO) -> Path:
    """Generate the C model into ``workdir/model`` and compile the native device program
    (``profile``: with ``-DTD_PROFILE``, per-layer times, see ``start_native``; ``patch``:
    the patch-based stage, :func:`tinydeploy.cruntime.codegen.build`)."""
    facts = load(facts)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    binary = workdir / BINARY
    stamp = workdir / "native.json"
    fingerprint = _fingerprint(facts, profile, patch)
    with contextlib.suppress(OSError, ValueError):
        if binary.is_file() and json.loads(stamp.read_text()).get("fingerprint") == fingerprint:
            log.debug("native build up to date: %s", binary)
            return binary
    res = generate_c(facts, workdir / "model", tflm_arena=False, patch=patch)
    fw = firmware_dir()
    missing = [f for f in FIRMWARE_SOURCES if not (fw / f).is_file()]
    if missing:
        raise TinyDeployError("file_not_found", what="native firmware source",
                              path=", ".join(str(fw / f) for f in missing))
    sources = [*(fw / f for f in FIRMWARE_SOURCES), *res.sources]
    tmp = workdir / (BINARY + ".tmp")
    flags = (*NATIVE_FLAGS, *model_flags(res.out_dir), *(("-DTD_PROFILE",) if profile else ()))
    compile_c(sources, tmp, [res.out_dir, fw], flags=flags, opt="-O2")
    tmp.replace(binary)
    stamp.write_text(json.dumps({"fingerprint": fingerprint, "model_sha256": facts.sha256,
                                 "memory": res.memory()}, indent=2) + "\n")
    log.info("native device built: %s (%s)", binary, res.summary())
    return binary


class NativeProcess(PtyProcess):
    """A running native device program; ``port`` is its pseudo-terminal."""

    def __init__(self, proc: subprocess.Popen[bytes], port: str, binary: Path) -> None:
        super().__init__(proc, port)
        self.binary = binary


def start_native(facts: ModelFacts | str | Path | bytes, workdir: Path,
                 profile: Path | None = None, tflm: TflmTree | None = None,
                 arena_bytes: int | None = None, patch: PatchChoice = AUTO) -> NativeProcess:
    """Build (if needed) and start the native device; wait for its ``PTY`` line.

    Without ``tflm`` the program is the C runtime (``profile``: a file that gets one line of
    per-operator times per inference, ``tinydeploy.profile``); with a TFLM tree it is the
    generated TFLite Micro firmware on the Arduino-core stand-in (arena ``arena_bytes`` or
    ``--arena auto`` for the tree's kernels); ``patch``: see ``build_native``."""
    if tflm is None:
        binary = build_native(facts, workdir, profile is not None, patch)
        return run_native(binary, profile)
    from .tflm_firmware import build_tflm_firmware

    return run_native(build_tflm_firmware(facts, "native", tflm, arena_bytes, Path(workdir)))


def run_native(binary: Path, profile: Path | None = None) -> NativeProcess:
    """Start an already built native device program; wait for its ``PTY`` line."""
    cmd = [str(binary), *(("--profile", str(profile)) if profile is not None else ())]
    proc, port = spawn(cmd, START_TIMEOUT, "native", str(binary))
    log.debug("native device on %s (pid %d)", port, proc.pid)
    return NativeProcess(proc, port, binary)
