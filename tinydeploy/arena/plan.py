"""The generated firmware's arena size for ``--arena auto`` and ``--arena tuned`` (layer 6
of :mod:`tinydeploy.arena`, choice).

* ``auto`` -- per board, the cortex-m prediction of :mod:`.search` for the
  kernel flavour of the board's TFLM library (:func:`tinydeploy.boards.kernel_flavour`:
  ``cmsis-nn`` for Chirale_TensorFlowLite, ``reference`` for upstream TFLM) plus a margin;
  with several boards the largest figure wins (one ``TD_ARENA_SIZE`` per project).

  - Modelled libraries (``reference``: TFLM 90b983c2; ``cmsis-nn``: Chirale_TensorFlowLite
    2.0.0): margin ``MODELLED_MARGIN`` (1 %, no rounding; :mod:`.margin`). The replay
    reproduces those
    libraries' byte-exact minimum on the emulated Cortex-M4 (checked on every reference
    model, see tests/test_arena*.py and docs); a real Cortex-M board compiles the same
    sources with the same ABI (AAPCS: 4-byte pointers, short enums, 8-byte aligned
    doubles), so the struct sizes and the allocation sequence carry over; the 1 % keeps the
    figure within 2 % of the measured minimum. A board whose Arduino core compiles with
    ``-fno-short-enums`` (or whose flags are unknown) gets at least the worst case that
    int-sized enums add (:func:`.margin.int_enum_extra`).
  - Other libraries (``esp-nn``, unknown): ``UNMODELLED_MARGIN`` -- 25 %, at least 2 KiB,
    rounded up to 16 bytes (another TFLM version, kernels whose scratch buffers the
    replay does not know).

* ``tuned`` -- the minimum *measured* on qemu-cm4 with the user's TFLM tree
  (:func:`.measure.measure_arena`) plus ``TUNED_MARGIN`` (16 bytes), a
  size the measurement itself verified (min .. min + 16 all allocate and invoke). The same
  library on a Cortex-M board needs the same bytes: pointers are 32-bit on both, the code
  and therefore every struct and alignment are identical, and the only address-dependent
  effect -- the arena start's alignment, which shifts TFLM's 16-byte aligned allocations
  -- is fixed by the firmware (``alignas(16)``, as in the probe).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import TinyDeployError
from ..facts import ModelFacts
from .check import check_explicit_arena
from .graph import Graph
from .library import FLAVOURS
from .margin import TUNED_MARGIN, abi_margin, modelled_margin, unmodelled_margin
from .measure import measure_arena
from .search import arena


@dataclass(frozen=True)
class ArenaPlan:
    size: int
    predicted: int | None  # prediction or measured minimum (None for an explicit --arena N)
    margin: int
    note: str  # one line: where the size comes from
    why: str = ""  # the margin's justification (generated README / model_settings.h)
    flavour: str = ""  # kernel flavour the figure is for
    measured: dict[str, Any] = field(default_factory=dict)  # tuned: the measurement


_PREDICTIONS: dict[tuple[str, str], int] = {}


def predicted(facts: ModelFacts, flavour: str) -> int:
    """Cortex-M prediction for ``flavour`` (cached per model hash and flavour)."""
    key = (facts.sha256, flavour)
    if key not in _PREDICTIONS:
        _PREDICTIONS[key] = int(arena(facts, target="cortex-m", flavour=flavour).arena_bytes)
    return _PREDICTIONS[key]


WHY_MODELLED = (
    "The prediction replays the allocations of the board's TFLM library ({lib}) for a 32-bit "
    "Cortex-M and matches that library's byte-exact minimum on the emulated Cortex-M4; the "
    "board compiles the same sources with the same ABI. The 1 % margin holds where the "
    "board's Arduino core compiles with short enums (as the measurement); elsewhere the "
    "margin is at least the worst case int-sized enums (-fno-short-enums) add to the "
    "library's structs. The firmware reports "
    "the real `arena_used_bytes()` in its HELLO reply; `--arena tuned --tflm-src DIR` "
    "measures the minimum instead.")
WHY_UNMODELLED = (
    "The margin (25 % of the prediction, at least 2048 bytes) is there because the board's "
    "TFLM library ({lib}) is another TFLM version than the one modelled and its optimized "
    "kernels may need scratch buffers. The firmware reports the real `arena_used_bytes()` in "
    "its HELLO reply; regenerate with `--arena N` to tighten it.")
WHY_TUNED = (
    "Measured: the smallest arena with which {tree} allocates and invokes this model on the "
    "emulated Cortex-M4 (QEMU mps2-an386, byte-exact search, min - 1 fails, min + 1 .. "
    "+16 verified), plus 16 bytes. The same library on a Cortex-M board needs the same "
    "bytes: 32-bit pointers on both, identical code and struct layouts, and the arena start "
    "is 16-byte aligned in both firmwares.")
LIB_TEXT = {"cmsis-nn": "Chirale_TensorFlowLite 2.0.0, CMSIS-NN kernels",
            "reference": "TFLM reference kernels"}


def _auto_for(facts: ModelFacts, flavour: str, short_enums: bool | None = True) -> ArenaPlan:
    if flavour in FLAVOURS:
        pred = predicted(facts, flavour)
        margin = abi_margin(Graph.from_facts(facts, flavour), pred, short_enums)
        why = "1 %" if margin == modelled_margin(pred) else \
            "covers int-sized enums: the board's core compiles with -fno-short-enums or " \
            "its flags are unknown"
        return ArenaPlan(pred + margin, pred, margin,
                         f"Cortex-M prediction for {LIB_TEXT[flavour]} {pred} B + margin "
                         f"{margin} B ({why})", WHY_MODELLED.format(lib=LIB_TEXT[flavour]),
                         flavour)
    pred = predicted(facts, "reference")
    size = unmodelled_margin(pred)
    return ArenaPlan(size, pred, size - pred,
                     f"Cortex-M prediction {pred} B + margin {size - pred} B (max(2048 B, "
                     "25%), rounded up to 16 B)", WHY_UNMODELLED.format(lib=flavour), flavour)


def plan_auto(facts: ModelFacts, boards: list[Any], tflm_src: Any = None) -> ArenaPlan:
    """``--arena auto`` for ``boards`` (the largest per-board figure): per board, its
    library's kernel flavour and its Arduino core's enum size
    (:func:`tinydeploy.arduino_cores.short_enums`); native / qemu-cm4 with a TFLM tree
    ``tflm_src``: :func:`plan_for_tree`."""
    from ..arduino_cores import short_enums
    from ..boards import get_board, kernel_flavour

    pseudo = [get_board(b) for b in boards if get_board(b).native or get_board(b).emulated]
    plans = []
    if tflm_src is not None and pseudo:
        from ..device.tflm_build import TflmTree, find_tflm_tree

        tree = tflm_src if isinstance(tflm_src, TflmTree) else find_tflm_tree(tflm_src)
        plans = [plan_for_tree(facts, "auto", tree, b.native) for b in pseudo]
        boards = [b for b in boards if get_board(b) not in pseudo]
    keys = {(kernel_flavour(b), short_enums(getattr(get_board(b), "arduino_fqbn", None)))
            for b in boards} or ({("reference", True)} if not plans else set())
    plans += [_auto_for(facts, f, e) for f, e in sorted(keys, key=str)]
    return max(plans, key=lambda p: p.size)


def plan_for_tree(facts: ModelFacts, arena: str | int, tree: Any, native: bool) -> ArenaPlan:
    """``--arena auto | tuned | N`` for the TFLM firmware a pseudo-board builds against
    ``tree`` (a ``TflmTree``): its kernel flavour decides the prediction. ``native`` (a
    64-bit host, 8-byte pointers: the allocator's structs are larger than on Cortex-M)
    gets the unmodelled margin (25 %, at least 2 KiB) on the Cortex-M figure; qemu-cm4 the
    board margins (1 % for a modelled library, 16 B on a measurement)."""
    text = str(arena).strip().lower()
    if text in ("auto", "tuned"):
        plan = (plan_tuned(facts, tree) if text == "tuned"
                else _auto_for(facts, tree.flavour, True))  # built here: short enums
        # the kernel table models the reference kernels and the Arduino library's CMSIS-NN;
        # a tflite-micro checkout's newer CMSIS-NN keeps more (FULLY_CONNECTED kernel sums)
        unmodelled = (text == "auto" and tree.flavour != "reference"
                      and getattr(tree, "kind", "") == "tflite-micro")
        if not native and not unmodelled:
            return plan
        base = int(plan.predicted or plan.size)
        size = unmodelled_margin(base)
        why = ("the 64-bit host" if native else
               "tflite-micro's CMSIS-NN kernels, which the kernel table does not model")
        return ArenaPlan(size, base, size - base,
                         f"{plan.note.split(' + ')[0]} + margin {size - base} B for {why} "
                         "(max(2048 B, 25%), rounded up to 16 B)", plan.why,
                         plan.flavour, plan.measured)
    size = explicit_size(arena)
    warning = check_explicit_arena(facts, size, (tree.flavour,))
    note = f"{size} B as given with --arena (no margin added)"
    return ArenaPlan(size, None, 0, note + (f"; WARNING: {warning}" if warning else ""),
                     flavour=tree.flavour)


def explicit_size(arena: str | int) -> int:
    """``--arena N`` as a positive byte count (``bad_argument`` otherwise)."""
    try:
        size = int(str(arena).strip(), 0)
    except ValueError:
        size = -1
    if size <= 0:
        raise TinyDeployError("bad_argument", problem=f"--arena {arena!r} is not a byte count",
                              fix="pass --arena auto, --arena tuned or a positive number of bytes")
    return size


def tree_matches(tree: Any, lib: Any) -> bool:
    """Whether the TFLM tree ``tree`` is the board library ``lib`` (name and version from
    its library.properties; an upstream checkout is no board's library)."""
    if lib is None:
        return True  # a pseudo-board builds against the tree itself
    return str(tree.name).casefold() == str(lib.label).casefold()


def check_tuned_tree(tree: Any, boards: list[Any]) -> None:
    """Refuse ``--arena tuned`` measured with ``tree`` for a board whose library differs:
    another library needs other bytes (``bad_argument``, before the measurement)."""
    from ..boards import get_board

    for board in boards:
        b = get_board(board)
        lib = getattr(b, "tflm_lib", None)
        if not tree_matches(tree, lib):
            raise TinyDeployError(
                "bad_argument",
                problem=f"--arena tuned measures with {tree.name} ({tree.root}) but board "
                        f"{b.id} uses {lib.label}: its kernels need other arena bytes",
                fix=f"pass --tflm-src with {lib.label} (e.g. .pio/libdeps/<env>/{lib.name}), "
                    "or use --arena auto")


def plan_tuned(facts: ModelFacts, tflm_src: Any, boards: list[Any] | None = None
               ) -> ArenaPlan:
    """``--arena tuned``: the measured qemu-cm4 minimum of ``tflm_src`` (a path or a
    ``TflmTree``) + 16 bytes, refused for a board of ``boards`` whose library is another
    (:func:`check_tuned_tree`). Without a tree: ``tool_missing`` naming ``--tflm-src``."""
    import os

    from ..device.tflm_build import ENV_SRC, TflmTree, find_tflm_tree

    if tflm_src is None and not os.environ.get(ENV_SRC):
        raise TinyDeployError(
            "tool_missing", tool="a TFLM source tree for --arena tuned",
            fix=f"pass --tflm-src DIR (or set {ENV_SRC}) with the board's TFLM library "
                "(e.g. .pio/libdeps/<env>/Chirale_TensorFLowLite), or use --arena auto")
    tree = tflm_src if isinstance(tflm_src, TflmTree) else find_tflm_tree(tflm_src)
    check_tuned_tree(tree, list(boards or []))
    m = measure_arena(facts, tree)
    size = m.arena_bytes + TUNED_MARGIN
    return ArenaPlan(size, m.arena_bytes, TUNED_MARGIN,
                     f"measured minimum {m.arena_bytes} B on qemu-cm4 with {m.tree} "
                     f"({m.flavour} kernels) + {TUNED_MARGIN} B",
                     WHY_TUNED.format(tree=m.tree), m.flavour, m.to_dict())
