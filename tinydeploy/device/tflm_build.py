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
keeps every command and compiler message. ``build_tflm_firmware(facts, board, tree,
arena_bytes, out_dir)`` renders the firmware with :func:`tinydeploy.render.generate` (the
PlatformIO ``src/`` a real board gets: ``td_tflm_app.cpp``, ``model_settings.h``,
``main.cpp``, the model array, ``td_protocol.c``, ``td_arduino.cpp``), compiles it with the
Arduino-core stand-in and the board support (``firmware/cm4/`` or ``firmware/td_posix.c``)
and links it with the library: an ELF for QEMU, a host executable for ``native``.

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
from ..facts import ModelFacts, load
from ..install_hints import ARM_CXX, C_COMPILER
from ..log import log
from ..output import write_atomic
from ..resources import firmware_dir
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
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT)
    except subprocess.TimeoutExpired as err:
        raise TinyDeployError("build_failed", what=what, rc="timeout",
                              tail=f"no result after {COMPILE_TIMEOUT:.0f} s",
                              fix="check the machine load and try again") from err
    except OSError as err:
        raise TinyDeployError("build_failed", what=what, rc="?", tail=str(err),
                              fix="check the toolchain install") from err
    if log_file is not None:
        log_file.write(" ".join(cmd) + "\n" + proc.stdout + proc.stderr)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln] or lines
        raise TinyDeployError("build_failed", what=what, rc=proc.returncode,
                              tail=" | ".join(errors[:3])[:600],
                              fix="see the build log" if log_file is None
                              else f"see {getattr(log_file, 'name', 'the build log')}")
    return proc


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


# --- the firmware --------------------------------------------------------------------------
FIRMWARE_JSON = "tflm.json"
CORE_SOURCES = ("Arduino.cpp",)
PORT_SOURCES = {
    "qemu-cm4": ("arduino_core/td_core_cm4.c", "cm4/cm4_startup.c", "cm4/cm4_uart.c",
                 "cm4/cm4_timer.c"),
    "native": ("arduino_core/td_core_posix.c", "td_posix.c"),
}
OUTPUT = {"qemu-cm4": "td_tflm_qemu_cm4.elf", "native": "td_tflm_native"}


def _fingerprint(facts: ModelFacts, board: str, arena_bytes: int, lib_key: str) -> str:
    from ..cruntime.codegen import generator_digest
    from ..resources import templates_dir

    h = hashlib.sha256(f"{facts.sha256} {board} {arena_bytes} {lib_key}".encode())
    h.update(generator_digest().encode())
    for folder in (firmware_dir(), templates_dir()):
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                h.update(str(path.relative_to(folder)).encode())
                h.update(path.read_bytes())
    return h.hexdigest()


def build_tflm_firmware(facts: ModelFacts | str | Path | bytes, board: str, tree: TflmTree,
                        arena_bytes: int | None, out_dir: Path) -> Path:
    """Render the TFLM firmware for ``board`` with an arena of ``arena_bytes`` (None:
    ``--arena auto`` for the tree's kernels, :func:`tinydeploy.arena.plan.plan_for_tree`)
    and build it. The model's operators the tree cannot run are refused before anything is
    compiled (:func:`tinydeploy.device.tflm_ops.check_tree_ops`).

    ``out_dir/project`` gets the generated PlatformIO project (``src/`` exactly as a real
    board gets it), ``out_dir/obj`` the objects, ``out_dir/tflm.json`` the build facts
    (sizes, library key, timings). Returns the ELF (``qemu-cm4``) or executable
    (``native``). A rebuild is skipped when model, arena, library and firmware sources are
    unchanged. Errors: ``build_failed`` (compile/link), ``tool_missing`` (toolchain), and
    the generator's own refusals (guard, unsupported op, does_not_fit).
    """
    from ..boards import get_board
    from ..render import generate
    from .tflm_ops import check_tree_ops

    facts = load(facts)
    if board not in BOARDS:
        raise TinyDeployError("bad_argument", problem=f"board {board} cannot build TFLM firmware",
                              fix=f"choose one of: {', '.join(BOARDS)}")
    check_tree_ops(facts, tree)  # before any library build
    if arena_bytes is None:
        from ..arena.plan import plan_for_tree

        arena_bytes = plan_for_tree(facts, "auto", tree, native=board == "native").size
    if arena_bytes <= 0:
        raise TinyDeployError("bad_argument", problem=f"arena of {arena_bytes} bytes",
                              fix="pass a positive arena size")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tc = toolchain(board)
    key = library_key(tree, board, tc)
    output = out_dir / OUTPUT[board]
    stamp = out_dir / FIRMWARE_JSON
    fingerprint = _fingerprint(facts, board, arena_bytes, key)
    with contextlib.suppress(OSError, ValueError):
        if output.is_file() and json.loads(stamp.read_text()).get("fingerprint") == fingerprint:
            log.debug("TFLM firmware up to date: %s", output)
            return output
    start = time.monotonic()
    project = out_dir / "project"
    if project.exists():
        shutil.rmtree(project)
    # the tree's defects decide tinydeploy's kernel overrides (tinydeploy.tflm_overrides)
    generate(facts, project, boards=[board], arena=str(arena_bytes), fmt="platformio",
             runtime="tflm", tflm_src=tree.root)
    from ..library import project_sources

    fw = firmware_dir()
    b = get_board(board)
    # src/tinydeploy/ (the validation server) and lib/NAME/src, as [env:BOARD] compiles them
    app_sources, folders = project_sources(project)
    port_sources = [fw / "arduino_core" / f for f in CORE_SOURCES] + \
        [fw / f for f in PORT_SOURCES[board]]
    includes = [*(f"-I{d}" for d in folders), f"-I{fw / 'arduino_core'}", f"-I{fw}"]
    if board == "qemu-cm4":
        includes.append(f"-I{fw / 'cm4'}")
    includes += [f"-isystem{d}" for d in tree.include_dirs]
    obj_dir = out_dir / "obj"
    if obj_dir.exists():
        shutil.rmtree(obj_dir)
    obj_dir.mkdir()
    log_path = out_dir / "build.log"
    log_path.write_text("")
    jobs = []
    for s in [*app_sources, *port_sources]:
        cxx = s.suffix != ".c"
        lang = CXX_ONLY if cxx else (("-std=c99",) if s.parent == fw / "cm4" else C_ONLY)
        if not cxx and board == "native" and s.parent != fw / "arduino_core":
            lang = ("-std=c99",)
        flags = [*tc.cpu, *lang, *COMMON, CORE_OPT, *APP_WARNINGS, *tree.defines,
                 f"-D{b.define}", *includes]
        obj = obj_dir / (s.parent.parent.name + "_" + s.parent.name + "_" + s.stem + ".o")
        jobs.append(([tc.cxx if cxx else tc.cc, *flags, "-c", str(s), "-o", str(obj)], obj,
                     obj, f"compiling {s.name} (generated TFLM firmware, {board})"))
    _compile_all(jobs, log_path, f"firmware {board}")
    app_objs = [str(o) for _, _, o, _ in jobs]

    # TFLM: the whole cached library if there is one, else the model's part of it (core +
    # its operators' kernels, object cache); an undefined symbol then builds it all.
    lib_start = time.monotonic()
    full = cache_root() / key / "libtflm.a"
    lib, mode = full, "library"
    if not full.is_file():
        lib, mode = out_dir / "libtflm_model.a", "model kernels"
        archive(tc, compile_objects(tree, board, model_sources(tree, board, facts.op_names),
                                    tc), lib)
    tmp = output.with_name(output.name + ".tmp")
    link = [tc.cxx, *tc.cpu, *tc.ldflags]
    if board == "qemu-cm4":
        link += ["-T", str(fw / "cm4" / "cm4.ld")]
    what = f"linking the TFLM firmware ({board})"
    try:
        with open(log_path, "a", encoding="utf-8") as lf:
            _run([*link, *app_objs, str(lib), "-lm", "-o", str(tmp)], what, lf)
    except TinyDeployError:
        if lib == full or "undefined reference" not in log_path.read_text(errors="replace"):
            raise
        log.info("the model needs more of TFLM than its operators' kernels: building it all")
        lib, mode = build_tflm_library(tree, board), "library"
        with open(log_path, "a", encoding="utf-8") as lf:
            _run([*link, *app_objs, str(lib), "-lm", "-o", str(tmp)], what, lf)
    lib_seconds = time.monotonic() - lib_start
    tmp.replace(output)
    info: dict[str, Any] = {
        "fingerprint": fingerprint, "model_sha256": facts.sha256, "board": board,
        "runtime": "tflm", "output": output.name, "arena_bytes": arena_bytes,
        "tflm": tree.to_dict(), "library": str(lib), "library_key": key,
        "library_mode": mode, "library_seconds": round(lib_seconds, 2),
        "firmware_seconds": round(time.monotonic() - start, 2), "compiler": tc.version(),
    }
    if board == "qemu-cm4":
        from .qemu import elf_sizes

        sizes = elf_sizes(output)
        info.update(sizes, flash_bytes=sizes["text"] + sizes["data"],
                    ram_bytes=sizes["data"] + sizes["bss"])
    write_atomic(stamp, json.dumps(info, indent=2) + "\n")
    log.info("TFLM firmware built: %s", output)
    return output


def firmware_info(out_dir: Path) -> dict[str, Any]:
    """The ``tflm.json`` of the last ``build_tflm_firmware`` in ``out_dir``."""
    return dict(json.loads((Path(out_dir) / FIRMWARE_JSON).read_text()))
