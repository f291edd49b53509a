"""Connecting to the device under validation: the port of a flashed board, or a pseudo-board
started here (sim, native, qemu-cm4), and the HELLO check that it runs this model.

``open_device`` yields a serial port (``hello.check_device`` then refuses a device that
runs another model); ``resolve_runtime`` applies ``--tflm-src``'s implied ``--runtime
tflm``; ``tflm_tree_for`` finds the TFLM tree a ``--runtime tflm`` build of native /
qemu-cm4 needs and ``tflm_arena`` the arena it gets.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import TinyDeployError, check_choice
from ..facts import ModelFacts

if TYPE_CHECKING:
    from ..cruntime.patch_auto import PatchChoice


@contextlib.contextmanager
def open_device(facts: ModelFacts, port: str | None, board: str | None,
                workdir: Path, profile: bool = False, runtime: str = "c",
                tflm_src: Any = None, arena_bytes: int | None = None,
                patch: PatchChoice = "auto") -> Iterator[str]:
    """Yield a serial port: the given one, or one served by a pseudo-board (sim, native,
    qemu-cm4). ``profile``: a profiling build writing ``workdir/profile.txt`` (native,
    qemu-cm4). ``runtime="tflm"`` builds the generated TFLite Micro firmware for native /
    qemu-cm4 against the TFLM tree ``tflm_src`` (a path, a ``TflmTree`` or None for
    ``$TINYDEPLOY_TFLM_SRC``) instead of the C runtime, with an arena of ``arena_bytes``
    (default: :func:`tflm_arena` for ``--arena auto``). ``patch``: the C runtime's
    patch-based stage (``auto``, ``off`` or (first, last, bands);
    :mod:`tinydeploy.cruntime.patch_auto`)."""
    tree = tflm_tree_for(board, runtime, tflm_src) if not port else None
    if port:
        yield port
        return
    if not board:
        raise TinyDeployError("bad_argument", problem="no device given",
                              fix="pass --port PORT of a flashed board, "
                                  "or --board sim|native|qemu-cm4")
    from ..boards import get_board

    b = get_board(board)
    if b.simulated:
        from .sim import start_sim

        with start_sim(facts) as proc:
            yield proc.port
    elif b.native:
        from .native import start_native

        with start_native(facts, workdir, workdir / "profile.txt" if profile else None,
                          tflm=tree, arena_bytes=arena_bytes, patch=patch) as proc:
            yield proc.port
    elif b.emulated:
        from .qemu import start_qemu

        with start_qemu(facts, workdir, b, profile=profile, tflm=tree,
                        arena_bytes=arena_bytes, patch=patch) as proc:
            yield proc.port
    else:
        from .flashing import find_port

        yield find_port(b)


def resolve_runtime(runtime: str | None, tflm_src: Any, default: str | None) -> str | None:
    """``--runtime`` as given or implied: ``--tflm-src`` alone implies ``tflm`` (a tree is
    only for the TFLM firmware), nothing at all gives ``default``. ``--runtime c`` with
    ``--tflm-src`` is a contradiction (``bad_argument``). ``$TINYDEPLOY_TFLM_SRC`` implies
    nothing: it is a default for the TFLM runtime, not a choice of it."""
    if tflm_src is not None and str(tflm_src).strip():
        if runtime == "c":
            raise TinyDeployError(
                "bad_argument", problem="--tflm-src names a TFLM tree but --runtime c builds "
                                        "the C runtime, which uses none",
                fix="drop --tflm-src, or pass --runtime tflm (or no --runtime)")
        return runtime or "tflm"
    return runtime or default


def tflm_arena(facts: ModelFacts, arena: str | int, tree: Any, board: str) -> Any:
    """The ``ArenaPlan`` of the TFLM firmware ``board`` (native / qemu-cm4) builds against
    ``tree``: ``--arena auto | tuned | N`` for the tree's kernels
    (:func:`tinydeploy.arena.plan.plan_for_tree`); refuses the model's operators the tree
    cannot run first (:func:`tinydeploy.device.tflm_ops.check_tree_ops`)."""
    from ..arena.plan import plan_for_tree
    from ..boards import get_board
    from .tflm_ops import check_tree_ops

    check_tree_ops(facts, tree)
    return plan_for_tree(facts, arena, tree, native=get_board(board).native)


def tflm_tree_for(board: str | None, runtime: str, tflm_src: Any = None) -> Any:
    """The TFLM tree a ``--runtime tflm`` build on native / qemu-cm4 needs (None for the C
    runtime and for boards that build nothing); ``bad_argument`` for an unknown runtime,
    ``tool_missing`` when no tree is given (see ``tflm_build.find_tflm_tree``)."""
    check_choice(runtime, ("c", "tflm"), "--runtime")
    if runtime != "tflm" or not board:
        return None
    from ..boards import get_board
    from .tflm_build import TflmTree, find_tflm_tree

    b = get_board(board)
    if not (b.native or b.emulated):
        return None
    return tflm_src if isinstance(tflm_src, TflmTree) else find_tflm_tree(tflm_src, board=b.id)
