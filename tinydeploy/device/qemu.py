"""Board ``qemu-cm4``: the generated C runtime + the protocol core as bare-metal Cortex-M4
firmware, run by QEMU (machine ``mps2-an386``) with its UART on a pseudo-terminal.

``build_qemu(facts, workdir)`` generates ``workdir/model/`` (td_model.c + kernels) and
cross-compiles it with ``firmware/td_protocol.c`` and the board support in
``firmware/cm4/`` (vector table and reset code, linker script for the AN386 memory map,
polled CMSDK UART driver, SysTick timer, main) into ``workdir/td_qemu_cm4.elf``; the
section sizes from ``arm-none-eabi-size`` go to ``workdir/qemu.json``. A rebuild is skipped
when the model, the firmware sources and the flags are unchanged.

``start_qemu(facts, workdir)`` builds, starts ``qemu-system-arm -serial pty -icount
shift=0`` and returns a ``QemuProcess`` (context manager, ``.port``, ``.stop()``).
Cycles reported by this board are emulated instruction counts (one instruction = 1 ns of
virtual time), deterministic but not the timing of real silicon.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..boards import Board, get_board
from ..cruntime import generate_c
from ..cruntime.codegen import generator_digest
from ..cruntime.patch_auto import AUTO, PatchChoice, choice_key
from ..errors import TinyDeployError
from ..facts import ModelFacts, load
from ..log import log
from ..objcache import compile_objects
from ..output import write_atomic
from ..resources import firmware_dir
from .arm_tools import QEMU, SIZE, _run, _tool, elf_sizes
from .native import model_flags
from .protocol import INFER_HEADER, RESULT_HEADER
from .ptyproc import PtyProcess, spawn

if TYPE_CHECKING:
    from .tflm_build import TflmTree

BOARD = "qemu-cm4"
ELF = "td_qemu_cm4.elf"
STAMP = "qemu.json"
PROFILE = "profile.txt"
START_TIMEOUT = 15.0

CC = "arm-none-eabi-gcc"

CM4_SOURCES = ("cm4_startup.c", "cm4_uart.c", "cm4_timer.c", "cm4_main.c")
LINKER_SCRIPT = "cm4.ld"
PROTOCOL_SOURCES = ("td_protocol.c",)
CPU_FLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft")
CFLAGS = ("-std=c99", "-Os", "-ffunction-sections", "-fdata-sections", "-Wall", "-Wextra",
          "-Werror")
LDFLAGS = ("--specs=nano.specs", "-nostartfiles", "-Wl,--gc-sections")
# The C runtime's kernel files are compiled for speed, everything else for size: measured on
# the reference models, -O2 kernels run 5-8 % fewer instructions than -Os (hot loops are
# -O2 already) for ~2.4 KB more code; -O3 is no faster and larger still.
KERNEL_OPT = "-O2"
MIN_PAYLOAD = 64
MAX_PAYLOAD = 1024  # larger inputs/outputs travel in chunks of this size

_PTY_LINE = re.compile(r"char device redirected to (/dev/\S+) \(label serial0\)")


def max_payload(facts: ModelFacts) -> int:
    """TD_MAX_PAYLOAD for this model: its whole input plus the INFER header, or its output
    plus the RESULT header, up to ``MAX_PAYLOAD`` (more travels in chunks); the protocol's
    receive buffer is sized from it, so small models get small buffers."""
    need = max(MIN_PAYLOAD, sum(t.nbytes for t in facts.inputs) + INFER_HEADER,
               sum(t.nbytes for t in facts.outputs) + RESULT_HEADER)
    return min((need + 7) // 8 * 8, MAX_PAYLOAD)


def _fingerprint(facts: ModelFacts, flags: list[str]) -> str:
    h = hashlib.sha256(facts.sha256.encode())
    h.update(" ".join(flags).encode())
    h.update(generator_digest().encode())
    fw = firmware_dir()
    for path in sorted([*fw.glob("td_*.[ch]"), *(fw / "cm4").glob("*")]):
        if path.is_file():
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def build_qemu(facts: ModelFacts | str | Path | bytes, workdir: Path,
               defines: tuple[str, ...] = (), profile: bool = False,
               patch: PatchChoice = AUTO) -> Path:
    """Generate the C model into ``workdir/model`` and cross-compile the Cortex-M4 firmware;
    return the ELF path. Sizes and build facts go to ``workdir/qemu.json``.

    ``defines``: extra ``-D`` flags (e.g. ``-DTD_PORTABLE``: plain C kernels instead of the
    DSP-extension ones). ``profile``: per-layer instruction counts (``-DTD_PROFILE``).
    ``patch``: the patch-based stage (:func:`tinydeploy.cruntime.codegen.build`)."""
    facts = load(facts)
    cc = _tool(CC)
    _tool(SIZE)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    elf = workdir / ELF
    stamp = workdir / STAMP
    payload = max_payload(facts)
    fw = firmware_dir()
    flags = [*CPU_FLAGS, *CFLAGS, *LDFLAGS, f"-DTD_MAX_PAYLOAD={payload}", *defines,
             *(("-DTD_PROFILE",) if profile else ())]
    # (--patch: the C runtime's patch-based stage changes the model code)
    fingerprint = _fingerprint(facts, [*flags, KERNEL_OPT, f"patch={choice_key(patch)}"])
    with contextlib.suppress(OSError, ValueError):
        if elf.is_file() and json.loads(stamp.read_text()).get("fingerprint") == fingerprint:
            log.debug("qemu-cm4 build up to date: %s", elf)
            return elf
    res = generate_c(facts, workdir / "model", tflm_arena=False, patch=patch)  # refuses first
    sources = [*(fw / "cm4" / f for f in CM4_SOURCES), *(fw / f for f in PROTOCOL_SOURCES)]
    missing = [str(p) for p in [*sources, fw / "cm4" / LINKER_SCRIPT] if not p.is_file()]
    if missing:
        raise TinyDeployError("file_not_found", what="qemu-cm4 firmware source",
                              path=", ".join(missing))
    tmp = workdir / (ELF + ".tmp")
    includes = [*model_flags(res.out_dir), f"-I{res.out_dir}", f"-I{fw}", f"-I{fw / 'cm4'}"]
    kernels = [src for src in res.sources if src.name.startswith("td_kernels")]
    cflags = [*(f for f in flags if f not in LDFLAGS), *includes]
    # the kernels at KERNEL_OPT, the rest -Os (see KERNEL_OPT); the library sources from
    # the object cache (tinydeploy.objcache), the model's own td_model.c compiled now
    objects, _ = compile_objects(cc, kernels, [*cflags, KERNEL_OPT], _run,
                                 lambda src: f"arm-none-eabi-gcc ({src.name})")
    board_objects, _ = compile_objects(cc, sources, [*flags, *includes], _run,
                                       lambda src: f"arm-none-eabi-gcc ({src.name})")
    cmd = [cc, *flags, *includes, "-T", str(fw / "cm4" / LINKER_SCRIPT),
           *(str(s) for s in [*board_objects, *(x for x in res.sources if x not in kernels),
                              *objects]), "-o", str(tmp)]
    proc = _run(cmd, "arm-none-eabi-gcc (qemu-cm4 firmware)")
    sizes = elf_sizes(tmp)
    tmp.replace(elf)
    info: dict[str, Any] = {
        "fingerprint": fingerprint, "model_sha256": facts.sha256, "board": BOARD,
        "elf": elf.name, **sizes, "flash_bytes": sizes["text"] + sizes["data"],
        "ram_bytes": sizes["data"] + sizes["bss"], "max_payload": payload,
        "compiler": _version(cc), "flags": flags, "kernel_opt": KERNEL_OPT,
        "warnings": proc.stderr.strip(),
        "memory": res.memory(),
    }
    write_atomic(stamp, json.dumps(info, indent=2) + "\n")
    log.info("qemu-cm4 firmware built: %s (text %d, data %d, bss %d bytes)", elf,
             sizes["text"], sizes["data"], sizes["bss"])
    return elf


def build_info(workdir: Path) -> dict[str, Any]:
    """The ``qemu.json`` written by the last ``build_qemu`` in ``workdir``."""
    return dict(json.loads((Path(workdir) / STAMP).read_text()))


def _version(tool: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0].strip() if out.stdout else ""
    return ""


class QemuProcess(PtyProcess):
    """A running QEMU; ``port`` is the pseudo-terminal of the board's UART0."""

    def __init__(self, proc: subprocess.Popen[bytes], port: str, elf: Path,
                 sizes: dict[str, Any]) -> None:
        super().__init__(proc, port)
        self.elf = elf
        self.sizes = sizes


def qemu_command(board: Board, elf: Path, profile: Path | None = None) -> list[str]:
    """The QEMU command line: the board's machine, UART0 on a new pty and nothing else on
    the terminal, deterministic instruction counting (1 instruction = 1 ns virtual);
    ``profile``: UART1 (per-layer counts of a profiling build) into that file."""
    cmd = [_tool(QEMU), "-M", str(board.qemu_machine), "-nographic", "-monitor", "none",
           "-serial", "pty", *(("-serial", f"file:{profile}") if profile else ()),
           "-icount", "shift=0", "-kernel", str(elf)]
    setpriv = shutil.which("setpriv")
    if setpriv:  # QEMU ends with the Python process that started it (no orphans)
        cmd = [setpriv, "--pdeathsig", "TERM", "--", *cmd]
    return cmd


def start_qemu(facts: ModelFacts | str | Path | bytes, workdir: Path,
               board: str | Board = BOARD, defines: tuple[str, ...] = (),
               profile: bool = False, tflm: TflmTree | None = None,
               arena_bytes: int | None = None, patch: PatchChoice = AUTO) -> QemuProcess:
    """Build (if needed) and boot the firmware in QEMU; wait for the UART's pty.

    Without ``tflm`` the firmware is the C runtime (``build_qemu``; ``defines``: see there;
    ``profile``: a profiling build whose per-layer SysTick ticks go to
    ``workdir/profile.txt``, one line per inference); with a TFLM tree it is the generated
    TFLite Micro firmware (:func:`tflm_firmware.build_tflm_firmware`, arena ``arena_bytes`` or
    ``--arena auto`` for the tree's kernels), built in ``workdir``; ``patch``: see
    ``build_qemu``."""
    b = get_board(board)
    _tool(QEMU)  # before a build it could not run
    if tflm is None:
        elf = build_qemu(facts, workdir, defines, profile, patch)
        info = build_info(workdir)
    else:
        from .tflm_firmware import build_tflm_firmware, firmware_info

        elf = build_tflm_firmware(facts, b.id, tflm, arena_bytes, Path(workdir))
        info = firmware_info(workdir)
    return boot_qemu(elf, b, info, Path(workdir) / PROFILE if profile and tflm is None else None)


def boot_qemu(elf: Path, board: str | Board = BOARD, info: dict[str, Any] | None = None,
              profile: Path | None = None) -> QemuProcess:
    """Boot an already built ELF in QEMU and wait for the UART's pty (``profile``: UART1
    into that file)."""
    b = get_board(board)
    cmd = qemu_command(b, elf, profile)
    proc, port = spawn(cmd, START_TIMEOUT, b.id, QEMU, pattern=_PTY_LINE,
                       merge_stderr=True)
    log.debug("qemu-cm4 on %s (pid %d)", port, proc.pid)
    return QemuProcess(proc, port, elf, dict(info or {}))
