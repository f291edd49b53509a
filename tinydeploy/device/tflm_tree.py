"""TFLM source trees for ``--runtime tflm`` on native / qemu-cm4 (see :mod:`.tflm_build`).

``find_tflm_tree(path)`` recognises an Arduino TFLM library (``library.properties`` +
``src/tensorflow/...``; all of ``src/`` minus tests/examples/benchmarks, ``-DARDUINO``,
the library's own kernels: ``cmsis-nn`` when ``kernels/cmsis_nn`` has sources) and a
tensorflow/tflite-micro checkout with its Makefile downloads (the sources of
``tools/make/sources.inc``, reference kernels, ``-DTF_LITE_STATIC_MEMORY
-DTF_LITE_DISABLE_X86_NEON``; ``cortex_m_generic/debug_log.cc`` on Cortex-M). The tree's
``content_hash`` covers every source and header the build reads.

A tflite-micro checkout has two kernel flavours, as TFLM's Makefile builds it: ``reference``
and ``cmsis-nn`` (``OPTIMIZED_KERNEL_DIR=cmsis_nn``: ``kernels/cmsis_nn/X.cc`` replaces
``kernels/X.cc``; the C sources of ``downloads/cmsis_nn/Source`` without the float ones;
``-DCMSIS_NN -DARM_NN_ENABLE_F16=0 -DARM_NN_ENABLE_F32=0 -DKERNELS_OPTIMIZED_FOR_SPEED``;
CMSIS-NN picks its DSP code from ``-mcpu=cortex-m4``). The rule (:func:`upstream_flavour`):
the ``flavour`` argument, else ``$TINYDEPLOY_TFLM_FLAVOUR`` (``reference``, ``cmsis-nn`` or
``auto``: ``cmsis-nn`` when ``downloads/cmsis_nn`` is there and the target is a Cortex-M,
every board but ``native``, no board counting as one), else ``DEFAULT_FLAVOUR``
(``reference``: the shared ground truth's kernels, which the arena prediction models
exactly; the Cortex-M prediction's ``cmsis-nn`` is Chirale 2.0.0's, and upstream CMSIS-NN
needs more: sine_mlp 1,412 B measured vs 1,192 B predicted, its FULLY_CONNECTED keeps
``kernel_sums`` with ``KERNELS_OPTIMIZED_FOR_SPEED``). The name (``tflite-micro cmsis-nn``)
and the content hash say which. An Arduino library's flavour is its own (it ships the
kernels it has).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import TinyDeployError
from ..log import log

ENV_SRC = "TINYDEPLOY_TFLM_SRC"
ENV_FLAVOUR = "TINYDEPLOY_TFLM_FLAVOUR"
REFERENCE = "reference"
CMSIS_NN = "cmsis-nn"
FLAVOURS = (REFERENCE, CMSIS_NN)
AUTO = "auto"
DEFAULT_FLAVOUR = REFERENCE  # AUTO once the arena prediction models upstream CMSIS-NN
HOST_BOARDS = frozenset({"native"})  # targets that are not a Cortex-M
ARDUINO = "arduino-library"
UPSTREAM = "tflite-micro"
MISSING_FIX = (
    "--runtime tflm on qemu-cm4/native compiles TFLite Micro from source: pass --tflm-src DIR "
    f"(or set {ENV_SRC}) with the Arduino library Chirale_TensorFLowLite (Arduino Library "
    "Manager, or PlatformIO: .pio/libdeps/<env>/Chirale_TensorFLowLite) or a "
    "tensorflow/tflite-micro checkout after `make -f tensorflow/lite/micro/tools/make/Makefile "
    "third_party_downloads`")

_DOWNLOADS = "tensorflow/lite/micro/tools/make/downloads"
_UPSTREAM_NEEDS = {  # download -> a file that proves it is there
    "flatbuffers": "flatbuffers/include/flatbuffers/flatbuffers.h",
    "gemmlowp": "gemmlowp/fixedpoint/fixedpoint.h",
    "ruy": "ruy/ruy/profiler/instrumentation.h",
}
_CMSIS_NN_PROBE = "cmsis_nn/Include/arm_nnfunctions.h"  # in downloads/
# cmsis_nn.inc (ARM_NN_ENABLE_F16/F32=0) and the Makefile's OPTIMIZE_KERNELS_FOR default
_CMSIS_NN_DEFINES = ("-DCMSIS_NN", "-DARM_NN_ENABLE_F16=0", "-DARM_NN_ENABLE_F32=0",
                     "-DKERNELS_OPTIMIZED_FOR_SPEED")
_CMSIS_NN_SKIP = re.compile(r"(_f16|_f32)\.c$|^arm_nntables_flt\.c$")
_SOURCE_EXT = (".c", ".cc", ".cpp")
_HEADER_EXT = (".h", ".hpp", ".inc")
_SKIP_DIRS = frozenset({"examples", "example", "tests", "test", "testing", "benchmarks",
                        "benchmarking", "tools", "docs", "python", "integration_tests"})
_SKIP_FILE = re.compile(r"(_test|_tests|_benchmark|test_common|_test_config)\.(c|cc|cpp)$"
                        r"|^(test_helpers|test_helper_custom_ops|kernel_runner|fake_micro_context|"
                        r"mock_micro_graph|micro_test)\.(c|cc|cpp)$")


# --- the tree ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TflmTree:
    """A TFLM source tree: what to compile and how.

    ``kind`` is ``"arduino-library"`` or ``"tflite-micro"``, ``root`` the folder given,
    ``flavour`` ``"reference"`` or ``"cmsis-nn"`` (the kernels), ``name`` a label (library
    name and version, or ``tflite-micro``), ``include_dirs`` / ``sources`` / ``defines`` the
    compile inputs, ``kernel_dirs`` the folders compiled with ``KERNEL_OPT``,
    ``content_hash`` the sha256 of every source and header the build reads."""

    kind: str
    root: Path
    flavour: str
    name: str
    include_dirs: tuple[Path, ...]
    sources: tuple[Path, ...]
    defines: tuple[str, ...]
    kernel_dirs: tuple[Path, ...]
    content_hash: str
    replacements: tuple[tuple[str, Path], ...] = ()  # (board, file replacing its namesake)

    def sources_for(self, board: str) -> list[Path]:
        """The sources built for ``board``: board-specific files replace their namesakes
        (TFLM's Makefile does the same for a TARGET)."""
        repl = {p.name: p for b, p in self.replacements if b == board}
        return [repl.get(s.name, s) for s in self.sources]

    def is_kernel(self, source: Path) -> bool:
        return any(source.is_relative_to(d) for d in self.kernel_dirs)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "root": str(self.root), "flavour": self.flavour,
                "name": self.name, "sources": len(self.sources),
                "include_dirs": [str(p) for p in self.include_dirs],
                "defines": list(self.defines), "content_hash": self.content_hash}


def _walk(top: Path, exts: tuple[str, ...], skip_dirs: frozenset[str] = _SKIP_DIRS,
          ) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs and not d.startswith("."))
        found += [Path(dirpath) / f for f in sorted(filenames) if f.endswith(exts)]
    return found


def _content_hash(root: Path, files: Iterable[Path], salt: str = "") -> str:
    h = hashlib.sha256(salt.encode())
    for path in sorted(set(files)):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _library_props(path: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    with contextlib.suppress(OSError, UnicodeDecodeError):
        for line in path.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                props[key.strip()] = value.strip()
    return props


def _is_arduino_lib(root: Path) -> bool:
    return ((root / "library.properties").is_file()
            and (root / "src/tensorflow/lite/micro/micro_interpreter.h").is_file())


def _arduino_tree(root: Path) -> TflmTree:
    src = root / "src"
    props = _library_props(root / "library.properties")
    sources = [p for p in _walk(src, _SOURCE_EXT) if not _SKIP_FILE.search(p.name)]
    headers = _walk(src, _HEADER_EXT)
    kernels = src / "tensorflow/lite/micro/kernels"
    cmsis = kernels / "cmsis_nn"
    flavour = "cmsis-nn" if cmsis.is_dir() and any(cmsis.glob("*.c*")) else "reference"
    kernel_dirs = (kernels, src / "third_party/cmsis_nn")
    name = f"{props.get('name', root.name)} {props.get('version', '')}".strip()
    return TflmTree(kind=ARDUINO, root=root, flavour=flavour, name=name,
                    include_dirs=(src,), sources=tuple(sources),
                    defines=("-DARDUINO=10819",), kernel_dirs=kernel_dirs,
                    content_hash=_content_hash(root, [*sources, *headers,
                                                      root / "library.properties"]))


def upstream_flavour(root: Path, flavour: str | None = None, board: str | None = None) -> str:
    """The kernel flavour a tflite-micro checkout is built with: ``flavour`` (``reference``,
    ``cmsis-nn``, ``auto`` or None), else ``$TINYDEPLOY_TFLM_FLAVOUR``, else
    ``DEFAULT_FLAVOUR``; ``auto``: ``cmsis-nn`` when ``downloads/cmsis_nn`` is there and
    ``board`` is a Cortex-M (None counts as one), ``reference`` otherwise. ``bad_argument``
    for another value, or for ``cmsis-nn`` without the download."""
    env = os.environ.get(ENV_FLAVOUR, "").strip()
    choice = (flavour or env or DEFAULT_FLAVOUR).strip().lower()
    has_cmsis = (root / _DOWNLOADS / _CMSIS_NN_PROBE).is_file()
    source = "--flavour" if flavour else ENV_FLAVOUR
    if choice not in (*FLAVOURS, AUTO):
        raise TinyDeployError("bad_argument", problem=f"{source}={choice!r} is no TFLM kernel "
                              "flavour", fix=f"choose one of: {', '.join(FLAVOURS)}, {AUTO}")
    if choice == CMSIS_NN and not has_cmsis:
        raise TinyDeployError(
            "bad_argument",
            problem=f"{source}={CMSIS_NN} but {root / _DOWNLOADS / 'cmsis_nn'} has no CMSIS-NN",
            fix="run `make -f tensorflow/lite/micro/tools/make/Makefile OPTIMIZED_KERNEL_DIR="
                f"cmsis_nn third_party_downloads` in {root}, or set {ENV_FLAVOUR}={REFERENCE}")
    if choice != AUTO:
        return choice
    return CMSIS_NN if has_cmsis and board not in HOST_BOARDS else REFERENCE


def _upstream_tree(root: Path, flavour: str) -> TflmTree:
    downloads = root / _DOWNLOADS
    missing = [name for name, probe in _UPSTREAM_NEEDS.items()
               if not (downloads / probe).is_file()]
    if missing:
        raise TinyDeployError(
            "bad_argument",
            problem=f"the tflite-micro checkout {root} lacks its third-party downloads "
                    f"({', '.join(missing)} not in {downloads})",
            fix=f"run `make -f tensorflow/lite/micro/tools/make/Makefile third_party_downloads` "
                f"in {root}")
    micro = root / "tensorflow/lite/micro"
    kernels = micro / "kernels"
    sources: list[Path] = []
    # TFL_CC_SRCS: every .cc/.c under tensorflow/ outside lite/micro and lite/experimental
    for path in _walk(root / "tensorflow", (".cc", ".c")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("tensorflow/lite/micro/", "tensorflow/lite/experimental/")):
            continue
        if rel == "tensorflow/lite/array.cc" or _SKIP_FILE.search(path.name):
            continue  # array.cc: excluded by the Makefile with TF_LITE_STATIC_MEMORY
        sources.append(path)
    # MICROLITE_CC_BASE_SRCS minus tests, and the kernels
    for sub in ("", "arena_allocator", "memory_planner", "tflite_bridge", "kernels"):
        folder = micro / sub if sub else micro
        sources += [p for p in sorted(folder.glob("*.cc"))
                    if not _SKIP_FILE.search(p.name) and "flexbuffers_generated" not in p.name]
    headers = [*_walk(root / "tensorflow", _HEADER_EXT)]
    includes = [root, downloads, downloads / "gemmlowp", downloads / "flatbuffers/include",
                downloads / "ruy"]
    for dep in ("flatbuffers/include", "gemmlowp", "ruy"):
        headers += _walk(downloads / dep, _HEADER_EXT)
    defines = ["-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_DISABLE_X86_NEON"]
    kernel_dirs = [kernels]
    if flavour == CMSIS_NN:  # specialize_files.py: kernels/cmsis_nn/X.cc replaces kernels/X.cc
        cmsis = downloads / "cmsis_nn"
        optimized = {p.name: p for p in sorted((kernels / "cmsis_nn").glob("*.cc"))}
        sources = [optimized.get(p.name, p) if p.parent == kernels else p for p in sources]
        sources += [p for p in _walk(cmsis / "Source", (".c",), frozenset())
                    if not _CMSIS_NN_SKIP.search(p.name)]
        headers += _walk(cmsis / "Include", _HEADER_EXT, frozenset())
        includes += [cmsis, cmsis / "Include"]
        defines += _CMSIS_NN_DEFINES
        kernel_dirs.append(cmsis)  # THIRD_PARTY_KERNEL_OPTIMIZATION_LEVEL = -O2
    debug_log = micro / "cortex_m_generic/debug_log.cc"
    replacements = (("qemu-cm4", debug_log),) if debug_log.is_file() else ()
    name = UPSTREAM if flavour == REFERENCE else f"{UPSTREAM} {flavour}"
    return TflmTree(kind=UPSTREAM, root=root, flavour=flavour, name=name,
                    include_dirs=tuple(includes), sources=tuple(sources),
                    defines=tuple(defines), kernel_dirs=tuple(kernel_dirs),
                    content_hash=_content_hash(root, [*sources, *headers,
                                                      *(p for _, p in replacements)],
                                               "" if flavour == REFERENCE else flavour),
                    replacements=replacements)


def find_tflm_tree(path: str | Path | None = None, flavour: str | None = None,
                   board: str | None = None) -> TflmTree:
    """Detect the TFLM tree at ``path`` (default: ``$TINYDEPLOY_TFLM_SRC``).

    Accepts an Arduino library folder (or its ``src/``, or a folder holding exactly one such
    library, like PlatformIO's ``.pio/libdeps/<env>``) and a tflite-micro checkout with its
    downloads. ``flavour`` / ``board`` choose a checkout's kernels (:func:`upstream_flavour`;
    an Arduino library has its own). Errors: none given -> ``tool_missing``; not a folder ->
    ``file_not_found``; another layout, missing downloads or an unknown flavour ->
    ``bad_argument``.
    """
    if path is None or not str(path).strip():
        path = os.environ.get(ENV_SRC) or None
    if path is None:
        raise TinyDeployError("tool_missing", tool="a TensorFlow Lite Micro source tree",
                              fix=MISSING_FIX)
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise TinyDeployError("file_not_found", what="TFLM source tree (--tflm-src)",
                              path=str(root))
    if root.name == "src" and _is_arduino_lib(root.parent):
        root = root.parent
    if not _is_arduino_lib(root) and not (root / "tensorflow").is_dir():
        libs = [d for d in sorted(root.iterdir()) if d.is_dir() and _is_arduino_lib(d)]
        if len(libs) == 1:
            root = libs[0]
    if _is_arduino_lib(root):
        tree = _arduino_tree(root)
    elif (root / "tensorflow/lite/micro/micro_interpreter.h").is_file():
        tree = _upstream_tree(root, upstream_flavour(root, flavour, board))
    else:
        raise TinyDeployError(
            "bad_argument",
            problem=f"{root} is neither a TFLM Arduino library (library.properties + "
                    "src/tensorflow/lite/micro/) nor a tensorflow/tflite-micro checkout",
            fix=MISSING_FIX)
    if not tree.sources:
        raise TinyDeployError("bad_argument", problem=f"no TFLM sources found in {root}",
                              fix=MISSING_FIX)
    log.debug("TFLM tree %s: %s, %s kernels, %d sources", root, tree.kind, tree.flavour,
              len(tree.sources))
    return tree
