"""Build the generated TFLite Micro firmware for the boards without hardware (``qemu-cm4``,
``native``) against a TFLM tree (``tflm_build.py`` builds the tree's library).

``build_tflm_firmware(facts, board, tree, arena_bytes, out_dir)`` renders the firmware with
:func:`tinydeploy.render.generate` (the PlatformIO ``src/`` a real board gets:
``td_tflm_app.cpp``, ``model_settings.h``, ``main.cpp``, the model array, ``td_protocol.c``,
``td_arduino.cpp``), compiles it with the Arduino-core stand-in and the board support
(``firmware/cm4/`` or ``firmware/td_posix.c``) and links it with the library: an ELF for
QEMU, a host executable for ``native``. It sits above the renderer and the arena planner,
which sit above ``tflm_build``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from ..errors import TinyDeployError
from ..facts import ModelFacts, load
from ..log import log
from ..output import write_atomic
from ..resources import firmware_dir
from . import tflm_build as tb
from .arm_tools import elf_sizes
from .tflm_build import TflmTree

# --- the firmware --------------------------------------------------------------------------
FIRMWARE_JSON = "tflm.json"
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
    if board not in tb.BOARDS:
        raise TinyDeployError("bad_argument", problem=f"board {board} cannot build TFLM firmware",
                              fix=f"choose one of: {', '.join(tb.BOARDS)}")
    check_tree_ops(facts, tree)  # before any library build
    if arena_bytes is None:
        from ..arena.plan import plan_for_tree

        arena_bytes = plan_for_tree(facts, "auto", tree, native=board == "native").size
    if arena_bytes <= 0:
        raise TinyDeployError("bad_argument", problem=f"arena of {arena_bytes} bytes",
                              fix="pass a positive arena size")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tc = tb.toolchain(board)
    key = tb.library_key(tree, board, tc)
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
    port_sources = [fw / "arduino_core" / f for f in tb.CORE_SOURCES] + \
        [fw / f for f in tb.PORT_SOURCES[board]]
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
        lang = tb.CXX_ONLY if cxx else (("-std=c99",) if s.parent == fw / "cm4" else tb.C_ONLY)
        if not cxx and board == "native" and s.parent != fw / "arduino_core":
            lang = ("-std=c99",)
        flags = [*tc.cpu, *lang, *tb.COMMON, tb.CORE_OPT, *tb.APP_WARNINGS, *tree.defines,
                 f"-D{b.define}", *includes]
        obj = obj_dir / (s.parent.parent.name + "_" + s.parent.name + "_" + s.stem + ".o")
        jobs.append(([tc.cxx if cxx else tc.cc, *flags, "-c", str(s), "-o", str(obj)], obj,
                     obj, f"compiling {s.name} (generated TFLM firmware, {board})"))
    tb._compile_all(jobs, log_path, f"firmware {board}")
    app_objs = [str(o) for _, _, o, _ in jobs]

    # TFLM: the whole cached library if there is one, else the model's part of it (core +
    # its operators' kernels, object cache); an undefined symbol then builds it all.
    lib_start = time.monotonic()
    full = tb.cache_root() / key / "libtflm.a"
    lib, mode = full, "library"
    if not full.is_file():
        lib, mode = out_dir / "libtflm_model.a", "model kernels"
        sources = tb.model_sources(tree, board, facts.op_names)
        tb.archive(tc, tb.compile_objects(tree, board, sources, tc), lib)
    tmp = output.with_name(output.name + ".tmp")
    link = [tc.cxx, *tc.cpu, *tc.ldflags]
    if board == "qemu-cm4":
        link += ["-T", str(fw / "cm4" / "cm4.ld")]
    what = f"linking the TFLM firmware ({board})"
    try:
        with open(log_path, "a", encoding="utf-8") as lf:
            tb._run([*link, *app_objs, str(lib), "-lm", "-o", str(tmp)], what, lf)
    except TinyDeployError:
        if lib == full or "undefined reference" not in log_path.read_text(errors="replace"):
            raise
        log.info("the model needs more of TFLM than its operators' kernels: building it all")
        lib, mode = tb.build_tflm_library(tree, board), "library"
        with open(log_path, "a", encoding="utf-8") as lf:
            tb._run([*link, *app_objs, str(lib), "-lm", "-o", str(tmp)], what, lf)
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
        sizes = elf_sizes(output)
        info.update(sizes, flash_bytes=sizes["text"] + sizes["data"],
                    ram_bytes=sizes["data"] + sizes["bss"])
    write_atomic(stamp, json.dumps(info, indent=2) + "\n")
    log.info("TFLM firmware built: %s", output)
    return output


def firmware_info(out_dir: Path) -> dict[str, Any]:
    """The ``tflm.json`` of the last ``build_tflm_firmware`` in ``out_dir``."""
    return dict(json.loads((Path(out_dir) / FIRMWARE_JSON).read_text()))
