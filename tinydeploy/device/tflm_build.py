"""Build the generated TFLite Micro firmware for the boards without hardware (``qemu-cm4``,
``native``) against a TFLM source tree the user already has.

``find_tflm_tree(path)`` recognises two layouts (``path`` or ``$TINYDEPLOY_TFLM_SRC``):

* an **Arduino library** (what PlatformIO puts in ``.pio/libdeps/<env>/<library>/`` and the
  Arduino IDE in ``libraries/``): ``library.properties`` + ``src/tensorflow/...``,
  ``src/third_party/...``; all of ``src/`` is compiled the way the Arduino IDE does (with
  ``-DARDUINO`` over tinydeploy's Arduino-core stand-in ``firmware/arduino_core/``), minus
  tests, examples and benchmarks; kernels are the library's own (CMSIS-NN for
  Chirale_TensorFLowLite: flavour ``cmsis-nn``);
* a **tensorflow/tflite-micro checkout** whose third-party downloads are present
  (``tensorflow/lite/micro/tools/make/downloads/{flatbuffers,gemmlowp,ruy}``): the sources
  TFLM's Makefile builds (``tools/make/sources.inc``: the interpreter, allocators, memory
  planners, TFLite bridge, the shared TFLite files and the reference kernels; flavour
  ``reference``) with its defines (``-DTF_LITE_STATIC_MEMORY -DTF_LITE_DISABLE_X86_NEON``);
  on Cortex-M ``cortex_m_generic/debug_log.cc`` replaces the stdio one, as the Makefile's
  ``TARGET=cortex_m_generic`` does.

``build_tflm_library(tree, board)`` compiles that tree once per (tree content, compiler,
flags) into ``<cache>/<key>/libtflm.a`` (``<cache>`` = ``$TINYDEPLOY_TFLM_CACHE`` or
``~/.cache/tinydeploy/tflm``) with ``os.cpu_count()`` parallel jobs; ``build.log`` beside it
keeps every command and compiler message. ``tflm_firmware.build_tflm_firmware`` builds the
generated firmware with that library.

Errors: no tree -> ``tool_missing`` (where to get one); a folder of another layout or
without the downloads -> ``bad_argument``; a compiler error -> ``build_failed`` (exit 8)
with the tail of the message and the log's path.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import TinyDeployError
from ..install_hints import ARM_CXX, C_COMPILER
from ..log import log
from ..output import write_atomic
from ..resources import firmware_dir
from .arm_tools import run_tool
from .tflm_tree import (  # noqa: F401  (re-exported: the API of this module)
    _DOWNLOADS,
    _UPSTREAM_NEEDS,
    ARDUINO,
    ENV_SRC,
    MISSING_FIX,
    UPSTREAM,
    TflmTree,
    find_tflm_tree,
)

ENV_CACHE = "TINYDEPLOY_TFLM_CACHE"
BOARDS = ("qemu-cm4", "native")
BUILD_VERSION = "1"  # bump when the way libraries are built changes (new cache keys)
COMPILE_TIMEOUT = 300.0

# --- flags ---------------------------------------------------------------------------------
CM4_CPU = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft")
COMMON = ("-ffunction-sections", "-fdata-sections", "-fno-unwind-tables",
          "-fno-asynchronous-unwind-tables")
CXX_ONLY = ("-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics")
C_ONLY = ("-std=c11",)
CORE_OPT = "-Os"  # TFLM's Makefile: library core -Os, kernels -O2
KERNEL_OPT = "-O2"
APP_WARNINGS = ("-Wall", "-Wextra", "-Werror")


@dataclass(frozen=True)
class Toolchain:
    """Compilers and flags of one board."""

    board: str
    cc: str
    cxx: str
    ar: str
    cpu: tuple[str, ...]
    ldflags: tuple[str, ...]

    def version(self) -> str:
        out = _run([self.cxx, "--version"], f"{self.cxx} --version").stdout
        return out.splitlines()[0].strip() if out else self.cxx


def toolchain(board: str) -> Toolchain:
    """The compilers for ``board`` (``tool_missing`` with the apt fix if absent)."""
    if board == "qemu-cm4":
        fix = ARM_CXX
        names = ("arm-none-eabi-gcc", "arm-none-eabi-g++", "arm-none-eabi-ar")
        cpu = CM4_CPU
        ld = ("--specs=nano.specs", "--specs=nosys.specs", "-nostartfiles",
              "-Wl,--gc-sections")
    elif board == "native":
        fix = C_COMPILER
        names = (os.environ.get("CC", "gcc"), os.environ.get("CXX", "g++"), "ar")
        cpu = ()
        ld = ("-Wl,--gc-sections",)
    else:
        raise TinyDeployError("bad_argument", problem=f"board {board} cannot build TFLM firmware",
                              fix=f"choose one of: {', '.join(BOARDS)}")
    paths = []
    for name in names:
        path = shutil.which(name)
        if path is None:
            raise TinyDeployError("tool_missing", tool=name, fix=fix)
        paths.append(path)
    return Toolchain(board, paths[0], paths[1], paths[2], cpu, ld)


# --- the library ---------------------------------------------------------------------------
def cache_root() -> Path:
    """Where compiled TFLM libraries live (``$TINYDEPLOY_TFLM_CACHE`` overrides)."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tinydeploy" / "tflm"


def core_include_dir() -> Path:
    return firmware_dir() / "arduino_core"


def compile_flags(tree: TflmTree, tc: Toolchain, cxx: bool, kernel: bool) -> list[str]:
    """Flags for one library source (the app adds its own warnings on top)."""
    opt = KERNEL_OPT if kernel else CORE_OPT
    lang = CXX_ONLY if cxx else C_ONLY
    includes = [f"-I{d}" for d in tree.include_dirs]
    if tree.kind == ARDUINO:
        includes.append(f"-I{core_include_dir()}")
    return [*tc.cpu, *lang, *COMMON, opt, *tree.defines, *includes]


def library_key(tree: TflmTree, board: str, tc: Toolchain | None = None) -> str:
    """Cache key of the compiled library: tree content, compiler, flags, board."""
    tc = tc or toolchain(board)
    h = hashlib.sha256(f"tinydeploy-tflm {BUILD_VERSION} {board}\n".encode())
    h.update(tree.content_hash.encode())
    h.update(tc.version().encode())
    for cxx in (False, True):
        for kernel in (False, True):
            h.update(" ".join(compile_flags(tree, tc, cxx, kernel)).encode())
    for src in tree.sources_for(board):
        h.update(str(src.relative_to(tree.root) if src.is_relative_to(tree.root) else src)
                 .encode())
    if tree.kind == ARDUINO:  # the library sees the core's headers
        for hdr in sorted(core_include_dir().glob("*.h")):
            h.update(hdr.read_bytes())
    return f"{board}-{tree.flavour}-{h.hexdigest()[:20]}"


def _run(cmd: list[str], what: str, log_file: Any = None) -> subprocess.CompletedProcess[str]:
    """A TFLM compile step (:func:`.arm_tools.run_tool` with the compile timeout)."""
    return run_tool(cmd, what, COMPILE_TIMEOUT, log_file,
                    fix="see the build log" if log_file is None else None)


def _object_name(tree: TflmTree, src: Path) -> str:
    rel = src.relative_to(tree.root) if src.is_relative_to(tree.root) else Path(src.name)
    return "_".join(rel.with_suffix("").parts) + ".o"


def _compile_all(jobs: list[tuple[list[str], Path, Path, str]], log_path: Path,
                 label: str) -> None:
    """Compile ``(cmd, tmp, obj, what)`` jobs in parallel (``os.cpu_count()`` at a time); a
    job's ``tmp`` output is renamed to ``obj`` when it succeeds, so an interrupted or failed
    compile leaves no object behind. The first failure is raised (``build_failed``) after
    the running jobs end; every command and message goes to ``log_path``."""
    workers = max(1, os.cpu_count() or 1)
    done = 0
    step = max(1, len(jobs) // 10)
    with open(log_path, "a", encoding="utf-8") as log_file, \
            concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_run_logged, cmd, tmp, obj, what) for cmd, tmp, obj, what in jobs]
        failure: TinyDeployError | None = None
        try:
            for fut in concurrent.futures.as_completed(futures):
                if fut.cancelled():  # after a failure: not started
                    continue
                text, err = fut.result()
                log_file.write(text)
                log_file.flush()
                done += 1
                if err is not None and failure is None:
                    failure = err
                    for other in futures:
                        other.cancel()
                if done % step == 0 or done == len(jobs):
                    log.info("%s: compiled %d/%d", label, done, len(jobs))
        except BaseException:  # Ctrl-C: start no further compiles, let running ones end
            for other in futures:
                other.cancel()
            raise
        if failure is not None:
            failure.hint = f"see {log_path}"
            failure.args = (f"{failure.message} — {failure.hint}",)
            raise failure


def _run_logged(cmd: list[str], tmp: Path, obj: Path, what: str,
                ) -> tuple[str, TinyDeployError | None]:
    try:
        proc = _run(cmd, what)
    except TinyDeployError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return " ".join(cmd) + "\n" + str(err) + "\n", err
    if tmp != obj:
        tmp.replace(obj)
    return " ".join(cmd) + "\n" + proc.stdout + proc.stderr, None


def compile_objects(tree: TflmTree, board: str, sources: list[Path],
                    tc: Toolchain | None = None) -> list[Path]:
    """Objects of ``sources`` from the object cache ``<cache>/<key>/obj`` (``key`` =
    :func:`library_key`), compiling the missing ones in parallel. Returns them in order."""
    tc = tc or toolchain(board)
    key = library_key(tree, board, tc)
    folder = cache_root() / key
    objdir = folder / "obj"
    objdir.mkdir(parents=True, exist_ok=True)
    jobs = []
    objs = []
    for src in sources:
        obj = objdir / _object_name(tree, src)
        objs.append(obj)
        if obj.is_file():
            continue
        cxx = src.suffix != ".c"
        flags = compile_flags(tree, tc, cxx, tree.is_kernel(src))
        tmp = obj.with_name(f"{obj.name}.{os.getpid()}.tmp")
        jobs.append(([tc.cxx if cxx else tc.cc, *flags, "-w", "-c", str(src), "-o", str(tmp)],
                     tmp, obj, f"compiling {src.name} ({tree.name})"))
    if jobs:
        log.info("compiling TFLM (%s, %s kernels) for %s: %d of %d sources, %d jobs; log %s",
                 tree.name, tree.flavour, board, len(jobs), len(sources),
                 os.cpu_count() or 1, folder / "build.log")
        _compile_all(jobs, folder / "build.log", f"TFLM {board}")
    return objs


def archive(tc: Toolchain, objs: list[Path], lib: Path) -> Path:
    """``ar rcs`` the objects into ``lib`` (written beside it, then renamed)."""
    tmp = lib.with_name(f"{lib.name}.{os.getpid()}.tmp")
    with contextlib.suppress(OSError):
        tmp.unlink()
    _run([tc.ar, "rcs", str(tmp), *(str(o) for o in objs)], f"ar ({lib.name})")
    tmp.replace(lib)
    return lib


def build_tflm_library(tree: TflmTree, board: str) -> Path:
    """The whole ``libtflm.a`` of ``tree`` for ``board`` (every source: core and all
    kernels), from the cache or compiled now; compiled objects stay in the object cache,
    a failed compile leaves none. Returns the library path."""
    tc = toolchain(board)
    key = library_key(tree, board, tc)
    folder = cache_root() / key
    lib = folder / "libtflm.a"
    if lib.is_file():
        log.info("TFLM library (%s, %s kernels) from the cache: %s", tree.name, tree.flavour, lib)
        return lib
    start = time.monotonic()
    sources = tree.sources_for(board)
    objs = compile_objects(tree, board, sources, tc)
    archive(tc, objs, lib)
    seconds = time.monotonic() - start
    info = {"key": key, "board": board, "tree": tree.to_dict(), "compiler": tc.version(),
            "sources": len(sources), "seconds": round(seconds, 1),
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_atomic(folder / "build.json", json.dumps(info, indent=2) + "\n")
    log.info("TFLM library built in %.0f s: %s", seconds, lib)
    return lib


# Kernel source stems per operator where they differ from the op's lower-case name; a model
# first links against its operators' kernels only (the rest are compiled on demand: an
# undefined symbol at link time builds the whole library).
OP_KERNELS: dict[str, tuple[str, ...]] = {
    "CONV_2D": ("conv",), "DEPTHWISE_CONV_2D": ("depthwise_conv", "conv"),
    "MAX_POOL_2D": ("pooling",), "AVERAGE_POOL_2D": ("pooling",), "RELU": ("activations",),
    "RELU6": ("activations",), "MEAN": ("reduce",), "SUM": ("reduce",),
    "REDUCE_MAX": ("reduce",), "PADV2": ("pad",), "TRANSPOSE_CONV": ("transpose_conv",),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": ("unidirectional_sequence_lstm", "lstm_eval"),
}
SUPPORT_KERNELS = ("kernel_util", "micro_tensor_utils")


def model_sources(tree: TflmTree, board: str, op_names: list[str]) -> list[Path]:
    """The sources a model needs first: every non-kernel source plus its operators' kernel
    files (``NAME.cc``, ``NAME_common.cc``, an optimized ``<dir>/NAME.cc``)."""
    stems = set(SUPPORT_KERNELS)
    for op in op_names:
        stems.update(OP_KERNELS.get(op, (op.lower(),)))
    kernels = tree.kernel_dirs[0]
    out = []
    for src in tree.sources_for(board):
        if src.is_relative_to(kernels):
            base = src.stem.removesuffix("_common")
            if base not in stems:
                continue
        out.append(src)
    return out


CORE_SOURCES = ("Arduino.cpp",)
PORT_SOURCES = {
    "qemu-cm4": ("arduino_core/td_core_cm4.c", "cm4/cm4_startup.c", "cm4/cm4_uart.c",
                 "cm4/cm4_timer.c"),
    "native": ("arduino_core/td_core_posix.c", "td_posix.c"),
}


