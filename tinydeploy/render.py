"""Firmware rendering: model facts + boards + arena -> Arduino sketch / PlatformIO project.

Like copier: the context is built here, in Python, from ``ModelFacts``, the board table
and the arena size; the Jinja2 templates in ``templates/`` only loop over it. Only files
ending in ``.jinja`` are rendered (the suffix is dropped), every other file is copied;
path parts are templates too (``{{ sketch }}``); folders starting with ``_`` hold
partials that are included, never written. Layout of ``--out DIR``::

    DIR/README.md                          what to install, how to build, the budget
    DIR/platformio.ini, DIR/src/...        --format platformio|both (per board [env:BOARD]
                                           = validation server, [env:BOARD_app] = src/main.cpp,
                                           the user's app, created once)
    DIR/SKETCH/SKETCH.ino + sources        --format arduino|both (SKETCH = DIR's name)

Everything is checked before anything is written (unknown board, a model the guard
rejects -- float, hybrid, uint8, an operator TFLM lacks --, an operator the board's TFLM
library lacks (:mod:`tinydeploy.tflm_libraries`), a model or arena that does not fit a
board); the tree is rendered into a temporary folder
beside ``DIR`` and moved into place at the end, so an error leaves nothing half-written.

Budget estimate (per board, documented in the generated README):

* flash = model bytes + TFLM code + the Arduino core (``Board.framework_flash``). TFLM code
  = ``TFLM_BASE_CODE`` (interpreter, allocator, flatbuffer reader, libc pieces) plus a
  per-operator kernel size (``OP_CODE``, default ``OP_CODE_DEFAULT``). The numbers are
  fitted to real Cortex-M4 builds (``cm4_text`` of the reference models minus the model
  bytes: 42.6 kB for one FULLY_CONNECTED, 70-75 kB for six-op CNNs) and kept above all
  of them; optimized kernel libraries (CMSIS-NN, ESP-NN) may differ.
* RAM = arena + ``RAM_OVERHEAD`` (interpreter/resolver objects, the protocol buffers,
  stack reserve) + the application API's tensor buffers (``app_api.api_ram``) + the core
  (``Board.framework_ram``), plus code and model on boards that run code from the same RAM
  (``Board.code_in_ram``, Teensy 4).

Arena with ``--arena auto``: the Cortex-M prediction of :mod:`tinydeploy.arena.search` for the
kernel flavour of each board's TFLM library plus a margin (1 % for the modelled libraries,
25 % / 2 KiB otherwise); ``--arena tuned``: the minimum measured on qemu-cm4 with the
user's TFLM tree + 16 bytes -- see :mod:`tinydeploy.arena.plan`. The firmware reports the
real ``arena_used_bytes()`` in its HELLO reply.

Imports go one way: this module -> :mod:`tinydeploy.library` (the Arduino library, the C
runtime on MCU boards) -> :mod:`tinydeploy.app_api` -> :mod:`tinydeploy.render_base` (budget
record, board context, template environment, ``GenerateResult``, shared by all three).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .arena.plan import ArenaPlan
from .boards import BOARDS, KIB, Board, get_board, kernel_flavour
from .device.tflm_ops import resolver_ops
from .errors import TinyDeployError, check_choice
from .facts import ModelFacts, TensorFacts
from .library import APP_SKELETON, generate_c_firmware, lib_context, write_library, write_platformio
from .log import stage
from .ops import TFLM_OPS
from .output import check_output_dir, staged_output
from .render_base import (
    PROTOCOL_RAM,
    SERIAL_BAUD,
    Budget,
    GenerateResult,
    board_context,
    comment_text,
    lib_macro,
    template_env,
)
from .tflm_libraries import check_boards, library_context

if TYPE_CHECKING:
    from .cruntime import CResult
    from .cruntime.patch_auto import PatchChoice

FORMATS = ("arduino", "platformio", "both")
RUNTIMES = ("tflm", "c")

ARENA_MARGIN_FRACTION = 0.25
ARENA_MARGIN_MIN = 2 * KIB

TFLM_BASE_CODE = 36 * KIB
OP_CODE_DEFAULT = 8 * KIB
OP_CODE: dict[str, int] = {
    "FULLY_CONNECTED": 8 * KIB, "CONV_2D": 10 * KIB, "DEPTHWISE_CONV_2D": 10 * KIB,
    "TRANSPOSE_CONV": 10 * KIB, "ADD": 10 * KIB, "SUB": 10 * KIB, "MUL": 8 * KIB,
    "MAX_POOL_2D": 6 * KIB, "AVERAGE_POOL_2D": 6 * KIB, "SOFTMAX": 8 * KIB,
    "LOGISTIC": 6 * KIB, "TANH": 6 * KIB, "MEAN": 8 * KIB, "RESHAPE": 2 * KIB,
    "SQUEEZE": 2 * KIB, "EXPAND_DIMS": 2 * KIB, "PAD": 4 * KIB, "PADV2": 4 * KIB,
    "CONCATENATION": 4 * KIB, "RELU": 4 * KIB, "RELU6": 4 * KIB, "QUANTIZE": 4 * KIB,
    "DEQUANTIZE": 4 * KIB, "UNIDIRECTIONAL_SEQUENCE_LSTM": 24 * KIB, "SVDF": 12 * KIB,
}
# the protocol storage (render_base.PROTOCOL_RAM) + interpreter and resolver objects + a
# stack reserve for Invoke()
INTERPRETER_RAM = 2 * KIB
STACK_RESERVE = 8 * KIB
RAM_OVERHEAD = PROTOCOL_RAM + INTERPRETER_RAM + STACK_RESERVE

FIRMWARE_FILES = ("td_protocol.h", "td_protocol.c", "td_arduino.h", "td_arduino.cpp",
                  "td_tflm_app.h")
MODEL_ARRAY = "g_model"
_PIO_FOLDERS = frozenset({"src", "include", "lib", "test", "boards", "data"})

_DTYPES = {"FLOAT32": "TD_DTYPE_FLOAT32", "INT32": "TD_DTYPE_INT32",
           "UINT8": "TD_DTYPE_UINT8", "INT8": "TD_DTYPE_INT8", "INT16": "TD_DTYPE_INT16"}


# --- budget ------------------------------------------------------------------------------
def tflm_code_estimate(op_names: list[str]) -> int:
    """Estimated TFLM .text bytes for a firmware registering exactly these operators."""
    return TFLM_BASE_CODE + sum(OP_CODE.get(n, OP_CODE_DEFAULT) for n in dict.fromkeys(op_names))


def budget(facts: ModelFacts, board: Board, arena_bytes: int, extra_ram: int = 0) -> Budget:
    """Flash and RAM estimate; ``extra_ram``: static RAM of kernel overrides (their tables)."""
    from .app_api import api_ram

    ops = facts.op_names
    return Budget(
        board=board.id, model_bytes=facts.size_bytes, code_bytes=tflm_code_estimate(ops),
        framework_flash=board.framework_flash, flash_limit=board.flash_bytes,
        arena_bytes=arena_bytes,
        overhead_ram=RAM_OVERHEAD + 16 * len(ops) + api_ram(facts) + extra_ram,
        framework_ram=board.framework_ram, code_in_ram=board.code_in_ram,
        ram_limit=board.ram_bytes)


def check_budget(facts: ModelFacts, board: Board, arena_bytes: int,
                 extra_ram: int = 0) -> Budget:
    """The board's budget; ``TinyDeployError("does_not_fit")`` with numbers if over."""
    b = budget(facts, board, arena_bytes, extra_ram)
    if not board.is_mcu and not (b.flash_limit and b.ram_limit):
        return b  # the host (native) has no fixed budget
    if b.flash_used > b.flash_limit:
        raise TinyDeployError("does_not_fit", what=f"model {facts.name}", board=board.id,
                              detail=b.flash_detail(),
                              fix="use a smaller model or a board with more flash")
    if b.ram_used > b.ram_limit:
        raise TinyDeployError("does_not_fit", what=f"model {facts.name}", board=board.id,
                              detail=b.ram_detail(),
                              fix="use a smaller --arena / model, or a board with more RAM")
    return b


# --- arena -------------------------------------------------------------------------------
_PREDICTIONS: dict[str, int] = {}


def predict_arena(facts: ModelFacts) -> int:
    """Cortex-M arena prediction of :mod:`tinydeploy.arena.search` (cached per model hash)."""
    if facts.sha256 not in _PREDICTIONS:
        from .arena.search import arena as run

        _PREDICTIONS[facts.sha256] = int(run(facts, target="cortex-m").arena_bytes)
    return _PREDICTIONS[facts.sha256]


def with_margin(arena_bytes: int) -> int:
    """An arena figure plus the documented margin, rounded up to 16 bytes."""
    margin = max(ARENA_MARGIN_MIN, math.ceil(arena_bytes * ARENA_MARGIN_FRACTION))
    return -(-(arena_bytes + margin) // 16) * 16


def plan_arena(facts: ModelFacts, arena: str | int, boards: list[Board] | None = None,
               tflm_src: str | Path | None = None) -> ArenaPlan:
    """``--arena``: auto (per-board flavour prediction + margin, :mod:`tinydeploy.arena.plan`;
    without ``boards`` the reference prediction + 25 %), tuned (measured with ``tflm_src``)
    or a byte count."""
    text = str(arena).strip().lower()
    if text == "tuned":
        from .arena.plan import plan_tuned

        return plan_tuned(facts, tflm_src, boards or [])
    if text == "auto" and boards:
        from .arena.plan import plan_auto

        return plan_auto(facts, boards, tflm_src)
    if text == "auto":
        predicted = predict_arena(facts)
        size = with_margin(predicted)
        note = (f"Cortex-M prediction {predicted} B + margin {size - predicted} B "
                f"(max({ARENA_MARGIN_MIN} B, {ARENA_MARGIN_FRACTION:.0%}), rounded up to 16 B)")
        return ArenaPlan(size, predicted, size - predicted, note)
    from .arena.check import check_explicit_arena
    from .arena.plan import explicit_size

    size = explicit_size(arena)
    flavours = tuple(kernel_flavour(b) for b in boards or [])
    warning = check_explicit_arena(facts, size, flavours or ("reference",))  # refuses < head
    note = f"{size} B as given with --arena (no margin added)"
    return ArenaPlan(size, None, 0, note + (f"; WARNING: {warning}" if warning else ""))


# --- context -----------------------------------------------------------------------------
def _float(x: float | None) -> str:
    text = repr(float(x if x is not None else 0.0))
    return text + ("f" if any(c in text for c in ".en") else ".0f")


def tensor_context(t: TensorFacts, facts: ModelFacts, side: str) -> dict[str, Any]:
    if t.dtype not in _DTYPES:
        raise TinyDeployError("model_rejected", path=facts.path,
                              problem=f"{side} tensor has type {t.dtype}",
                              fix="quantize the model to int8 input/output")
    if len(t.shape) > 6:
        raise TinyDeployError("model_rejected", path=facts.path,
                              problem=f"{side} tensor has {len(t.shape)} dimensions (max 6)",
                              fix="reshape the model input/output")
    return {"name": comment_text(t.name), "dtype": _DTYPES[t.dtype], "dtype_name": t.dtype,
            "ndims": len(t.shape), "dims": ", ".join(str(d) for d in t.shape) or "0",
            "shape": list(t.shape), "scale": _float(t.scale),
            "scale_text": f"{t.scale:.8g}" if t.scale is not None else "-",
            "zero_point": int(t.zero_point or 0), "bytes": t.nbytes}


def build_context(facts: ModelFacts, boards: list[Board], plan: ArenaPlan, sketch: str,
                  budgets: list[Budget], fmt: str = "both") -> dict[str, Any]:
    ops = resolver_ops(facts)
    libs: dict[str, dict[str, Any]] = {}
    for bd in boards:
        if bd.tflm_lib and bd.tflm_header:
            users = [b for b in boards if b.tflm_library == bd.tflm_library]
            libs.setdefault(bd.tflm_header, {"header": bd.tflm_header,
                                             "macro": lib_macro(bd.tflm_header),
                                             **library_context(bd.tflm_lib, users),
                                             "boards": []})
            libs[bd.tflm_header]["boards"].append(bd.id)
    sha = bytes.fromhex(facts.sha256)
    return {
        "version": __version__, "firmware_version": f"tinydeploy {__version__}",
        "model": {"name": comment_text(facts.name), "file": comment_text(Path(facts.path).name),
                  "sha256": facts.sha256, "bytes": facts.size_bytes,
                  "schema_version": facts.schema_version},
        "sha_rows": [", ".join(f"0x{x:02x}" for x in sha[i:i + 8]) for i in range(0, 32, 8)],
        "ops": ops, "num_ops": len(ops), "array": MODEL_ARRAY, "sketch": sketch,
        "input": tensor_context(facts.inputs[0], facts, "input"),
        "output": tensor_context(facts.outputs[0], facts, "output"),
        "inputs": [tensor_context(t, facts, "input") for t in facts.inputs],
        "outputs": [tensor_context(t, facts, "output") for t in facts.outputs],
        "arena": plan, "margin_fraction": f"{ARENA_MARGIN_FRACTION:.0%}",
        "margin_min": ARENA_MARGIN_MIN,
        "boards": [board_context(bd, b) for bd, b in zip(boards, budgets, strict=True)],
        "libs": list(libs.values()), "baud": SERIAL_BAUD, "overrides": [], "override_files": [],
        "arduino": fmt in ("arduino", "both"), "platformio": fmt in ("platformio", "both"),
        "estimate": {"base": TFLM_BASE_CODE, "overhead": RAM_OVERHEAD,
                     "code": tflm_code_estimate(facts.op_names)},
    }


# --- rendering ---------------------------------------------------------------------------
def render_tree(env: Any, subdir: str, ctx: dict[str, Any], dest: Path) -> list[Path]:
    """Render ``templates/<subdir>`` into ``dest``; return the written files."""
    from .resources import templates_dir

    root = templates_dir() / subdir
    written: list[Path] = []
    for src in sorted(root.rglob("*")):
        rel = src.relative_to(root)
        if src.is_dir() or any(p.startswith("_") for p in rel.parts):
            continue
        rel_out = Path(*(env.from_string(p).render(ctx) for p in rel.parts))
        target = dest / rel_out
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.name.endswith(".jinja"):
            target = target.with_name(target.name[: -len(".jinja")])
            tpl = env.get_template(f"{subdir}/{rel.as_posix()}")
            target.write_text(tpl.render(ctx), encoding="utf-8")
        else:
            shutil.copyfile(src, target)
        written.append(target)
    return written


def _model_sources(facts: ModelFacts) -> dict[str, str]:
    """The model data (``g_model``): file name -> text."""
    from .c_array import model_source

    header, source = model_source(facts.data, MODEL_ARRAY, header_name="model_data.h")
    return {"model_data.h": header, "model_data.cpp": source}


def _boards(names: list[str] | list[str | Board], runtime: str) -> list[Board]:
    boards: list[Board] = []
    for name in names:
        if isinstance(name, str) and not name.strip():
            continue
        b = get_board(name.strip() if isinstance(name, str) else name)
        if b not in boards:
            boards.append(b)
    if not boards:
        raise TinyDeployError("bad_argument", problem="no board given",
                              fix="pass --board ID[,ID...] (see `tinydeploy boards`)")
    for b in boards:
        if not b.supports(runtime):
            ok = ", ".join(b.runtimes) or "none: it runs no generated firmware"
            raise TinyDeployError("bad_argument",
                                  problem=f"board {b.id} cannot run the {runtime} runtime",
                                  fix=f"runtimes of {b.id}: {ok}")
    return boards


def generate(model: str | Path | bytes | ModelFacts, out: str | Path,
             boards: list[str] | list[str | Board], arena: str | int = "auto",
             fmt: str = "both", runtime: str = "tflm",
             name: str | None = None, labels: str | Path | list[str] | None = None,
             data: str | Path | None = None,
             tflm_src: str | Path | None = None, io: str = "model",
             patch: PatchChoice = "auto") -> GenerateResult | CResult:
    """Render firmware for ``boards`` into ``out`` (see the module docstring).

    ``runtime="c"`` delegates to :func:`tinydeploy.cruntime.generate_c` (its own result
    type, also with ``summary()``); ``arena`` and ``fmt`` apply to the TFLM runtime.
    A re-generate owns only the files it wrote (manifest with hashes): outputs of an
    earlier run that this one does not produce (a sketch after switching to
    ``fmt="platformio"``) are removed, a generated file the user edited is kept and the
    new one written beside it as ``NAME.new``, other files stay.

    Args:
        model: int8 ``.tflite`` path, bytes or :class:`ModelFacts`.
        out: output folder.
        boards: board ids (or :class:`Board`).
        arena: ``"auto"`` (Cortex-M prediction for the boards' kernel flavour + margin),
            ``"tuned"`` (measured on qemu-cm4 with the TFLM tree ``tflm_src`` + 16 B) or a
            byte count (a warning below the prediction, an error below the measured
            activation memory).
        fmt: ``arduino``, ``platformio`` or ``both``.
        runtime: ``tflm`` or ``c``.
        name: library/sketch name (default: the ``out`` folder's name), sanitized with
            :func:`tinydeploy.c_array.c_identifier`.
        labels: class labels (``a,b,c``, a file or a list; default: found beside the model,
            see :mod:`tinydeploy.app_api`).
        data: .npz whose ``x_test[0]`` the basic example runs (default ``data.npz`` beside
            the model).
        tflm_src: TFLM tree for ``arena="tuned"`` (default ``$TINYDEPLOY_TFLM_SRC``); for
            native / qemu-cm4 also the tree whose defects decide the kernel overrides
            (:mod:`tinydeploy.tflm_overrides`; MCU boards: their library's facts).
        io: ``model`` (the model's own interface, float32 included), ``int8`` (float
            boundary ops stripped) or ``float`` (:mod:`tinydeploy.interface`).
        patch: the C runtime's patch-based stage: ``auto`` (where the planner finds one
            that lowers the arena enough), ``off`` or (first op, last op, bands)
            (:mod:`tinydeploy.cruntime.patch_auto`); the TFLM runtime takes no other.

    The Arduino output is a library with the application API (``td_app.h``) and the
    examples ``basic`` and ``validate`` (:mod:`tinydeploy.library`). ``runtime="c"`` on MCU
    boards renders the same library around the C runtime with its own budget check
    (:func:`tinydeploy.library.generate_c_firmware`).

    Returns:
        A :class:`GenerateResult` (or ``CResult`` for ``runtime="c"``).

    Raises:
        TinyDeployError: bad arguments or unknown board (exit 2), a model the guard
            rejects (exit 3), a model or arena that does not fit a board (exit 4).
    """
    check_choice(fmt, FORMATS, "--format")
    check_choice(runtime, RUNTIMES, "--runtime")
    from .cruntime.patch_auto import refuse_for_tflm

    patch = refuse_for_tflm(patch, runtime)
    from .guard import check
    from .interface import with_io

    facts = check(model)  # the guard first, for both runtimes: what `check` refuses is refused
    if io != "model":
        facts = check(with_io(facts, io))  # --io int8: the float boundary ops stripped
    board_list = _boards(list(boards), runtime)
    out_path = check_output_dir(out)
    from .c_array import c_identifier

    sketch = c_identifier(name or out_path.resolve().name)
    if sketch.lower() in _PIO_FOLDERS:  # the sketch folder sits beside the PlatformIO ones
        sketch += "_sketch"
    if runtime == "c":  # the interpreter-free C runtime plans its own memory
        if any(b.is_mcu for b in board_list):  # Arduino library / PlatformIO project
            if not all(b.is_mcu for b in board_list):
                raise TinyDeployError("bad_argument", problem="MCU boards and pseudo-boards "
                                      "in one --board list", fix="generate them separately")
            return generate_c_firmware(facts, out_path, board_list, fmt, sketch,
                                       labels=labels, data=data, patch=patch)
        from .arena.search import cortex_m_estimate
        from .cruntime import generate_c

        return generate_c(facts, out_path, name=name, owned=True, tflm_arena=cortex_m_estimate,
                          patch=patch)
    ops = resolver_ops(facts)  # refuse unsupported ops before the (slower) arena prediction
    check_boards([(o["name"], o["resolver"]) for o in ops], board_list, facts.path,
                 BOARDS.values())
    from . import tflm_overrides
    from .device.tflm_ops import check_board_libraries

    check_board_libraries(facts, board_list)  # kernel defects no arena size gets around

    # library defects: MCU boards by their library's facts, native / qemu-cm4 by the tree
    overrides = tflm_overrides.plan(facts, board_list, tflm_src)  # logs what it decided
    plan = plan_arena(facts, arena, board_list, tflm_src)
    budgets = [check_budget(facts, b, plan.size, overrides.ram_bytes(facts, b))
               for b in board_list]
    stage("generate", f"{facts.name} -> {out_path} ({fmt}; {', '.join(b.id for b in board_list)}; "
                      f"arena {plan.size} B)")
    ctx = build_context(facts, board_list, plan, sketch, budgets, fmt)
    ctx.update(lib_context(facts, sketch, "tflm", labels, data, board_list))  # the API
    firmware = tflm_overrides.add_to_context(ctx, overrides, facts, FIRMWARE_FILES,
                                             lambda b: lib_macro(b.tflm_header or "none"))
    sources = _model_sources(facts)
    result = GenerateResult(out=out_path, boards=[b.id for b in board_list], runtime=runtime,
                            fmt=fmt, sketch=sketch, arena=plan, budgets=budgets)
    env = template_env()
    with staged_output(out_path, owned=True, once={APP_SKELETON}) as tmp:
        files = render_tree(env, "common", ctx, tmp)
        if fmt in ("platformio", "both"):
            files += write_platformio(env, ctx, tmp, "tflm", sources, firmware)
        if fmt in ("arduino", "both"):
            files += write_library(env, ctx, tmp / sketch, "tflm", sources, firmware)
        result.files = sorted(out_path / f.relative_to(tmp) for f in files)
    if fmt in ("platformio", "both"):
        result.platformio_dir = out_path
    if fmt in ("arduino", "both"):
        result.sketch_dir = out_path / sketch
    result.readme = out_path / "README.md"
    return result


# --- inspect -----------------------------------------------------------------------------
def _tensor_line(t: TensorFacts) -> str:
    q = (f"scale {t.scale:.6g}, zero point {t.zero_point}" if t.scale is not None
         else "not quantized")
    pc = " (per-channel)" if t.per_channel else ""
    return f"{t.name}: {t.dtype} {list(t.shape)} {t.nbytes} B, {q}{pc}"


def describe(facts: ModelFacts) -> str:
    """Human-readable facts table (``tinydeploy inspect``)."""
    ops = []
    for o in facts.ops:
        info = TFLM_OPS.get(o.name)
        where = (f"{info.resolver}()" + ("" if info.int8 else ", no int8 kernel")
                 if info else "NOT in TFLM")
        ops.append(f"{o.name} v{o.version} x{o.count}  [{where}]")
    rows: list[tuple[str, str]] = [
        ("model", facts.path), ("sha256", facts.sha256),
        ("size", f"{facts.size_bytes} B (weights {facts.weight_bytes} B)"),
        ("schema version", str(facts.schema_version)),
        ("description", facts.description or "-"),
        ("subgraphs", str(facts.subgraph_count)), ("tensors", str(facts.tensor_count)),
        ("operators", f"{len(facts.op_sequence)} in the graph, {len(facts.ops)} distinct"),
    ]
    rows += [("  op", line) for line in ops]
    rows.append(("quantization", facts.quantization + (", stateful" if facts.stateful else "")
                 + (", float interface" if facts.interface == "float" else "")))
    rows += [("  state", _tensor_line(t)) for t in facts.variables]
    rows += [("input", _tensor_line(t)) for t in facts.inputs]
    rows += [("output", _tensor_line(t)) for t in facts.outputs]
    if all(n in TFLM_OPS for n in facts.op_names):
        rows.append(("TFLM code", f"~{tflm_code_estimate(facts.op_names)} B estimated "
                                  f"(+ model {facts.size_bytes} B)"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


_env = template_env  # the name tests and older callers use
