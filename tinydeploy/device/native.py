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
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from ..cruntime import generate_c
from ..cruntime.codegen import generator_digest
from ..cruntime.harness import compile_c
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


def _fingerprint(facts: ModelFacts) -> str:
    h = hashlib.sha256(facts.sha256.encode())
    h.update(generator_digest().encode())
    fw = firmware_dir()
    for path in sorted(fw.glob("td_*.[ch]")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def build_native(facts: ModelFacts | str | Path | bytes, workdir: Path) -> Path:
    """Generate the C model into ``workdir/model`` and compile the native device program."""
    facts = load(facts)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    binary = workdir / BINARY
    stamp = workdir / "native.json"
    fingerprint = _fingerprint(facts)
    with contextlib.suppress(OSError, ValueError):
        if binary.is_file() and json.loads(stamp.read_text()).get("fingerprint") == fingerprint:
            log.debug("native build up to date: %s", binary)
            return binary
    res = generate_c(facts, workdir / "model", tflm_arena=False)
    fw = firmware_dir()
    missing = [f for f in FIRMWARE_SOURCES if not (fw / f).is_file()]
    if missing:
        raise TinyDeployError("file_not_found", what="native firmware source",
                              path=", ".join(str(fw / f) for f in missing))
    sources = [*(fw / f for f in FIRMWARE_SOURCES), *res.sources]
    tmp = workdir / (BINARY + ".tmp")
    compile_c(sources, tmp, [res.out_dir, fw], flags=NATIVE_FLAGS, opt="-O2")
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
                 tflm: TflmTree | None = None, arena_bytes: int | None = None) -> NativeProcess:
    """Build (if needed) and start the native device; wait for its ``PTY`` line.

    Without ``tflm`` the program is the C runtime; with a TFLM tree it is the generated
    TFLite Micro firmware on the Arduino-core stand-in (arena ``arena_bytes`` or ``auto``)."""
    if tflm is None:
        binary = build_native(facts, workdir)
    else:
        from ..render import plan_arena
        from .tflm_build import build_tflm_firmware

        facts = load(facts)
        arena = arena_bytes or plan_arena(facts, "auto").size
        binary = build_tflm_firmware(facts, "native", tflm, arena, Path(workdir))
    return run_native(binary)


def run_native(binary: Path) -> NativeProcess:
    """Start an already built native device program; wait for its ``PTY`` line."""
    proc, port = spawn([str(binary)], START_TIMEOUT, "native", str(binary))
    log.debug("native device on %s (pid %d)", port, proc.pid)
    return NativeProcess(proc, port, binary)
