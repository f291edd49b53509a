"""Connecting to the device under validation: the port of a flashed board, or a pseudo-board
started here (sim, native, qemu-cm4), and the HELLO check that it runs this model.

``open_device`` yields a serial port; ``check_device`` refuses a device that runs another
model or expects other tensors, or whose model did not start (an arena too small);
``resolve_runtime`` applies ``--tflm-src``'s implied ``--runtime tflm``; ``tflm_tree_for``
finds the TFLM tree a ``--runtime tflm`` build of native / qemu-cm4 needs and
``tflm_arena`` the arena it gets.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import TinyDeployError
from ..facts import ModelFacts


# --- device checks ---------------------------------------------------------------------
def as_dict(obj: Any) -> dict[str, Any]:
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    return dict(vars(obj)) if hasattr(obj, "__dict__") else {"value": str(obj)}


def check_device(info: Any, facts: ModelFacts, port: str, flavour: str = "reference",
                 native: bool = False) -> None:
    """Refuse a device that runs another model, expects other tensors or could not start
    the model (its HELLO's model status; ``flavour``: kernels of the device's TFLM library,
    ``native``: a 64-bit host, for the arena it needs)."""
    device_hash = str(info.model_sha256).lower()
    if device_hash != facts.sha256:
        raise TinyDeployError("hash_mismatch", device=device_hash[:16] or "?",
                              path=facts.path, host=facts.sha256[:16], port=port)
    check_model_status(info, facts, flavour, native)
    dev_in = tuple(getattr(info, "inputs", None) or (info.input,))
    dev_out = tuple(getattr(info, "outputs", None) or (info.output,))
    for side, devs, hosts in (("inputs", dev_in, facts.inputs),
                              ("outputs", dev_out, facts.outputs)):
        if len(devs) != len(hosts):
            raise TinyDeployError("protocol_error",
                                  problem=f"the device model has {len(devs)} {side}, the "
                                          f"model {len(hosts)}")
    for side, dev, host in [*(("input", d, h) for d, h in zip(dev_in, facts.inputs,
                                                              strict=True)),
                            *(("output", d, h) for d, h in zip(dev_out, facts.outputs,
                                                               strict=True))]:
        dev_shape = tuple(int(d) for d in dev.shape)
        if dev_shape != tuple(host.shape) or str(dev.dtype).upper() != host.dtype:
            raise TinyDeployError(
                "protocol_error",
                problem=f"device {side} is {dev.dtype} {list(dev_shape)} but the model's is "
                        f"{host.dtype} {list(host.shape)}")
        scale, zp = float(host.scale or 0.0), int(host.zero_point or 0)
        if int(dev.zero_point) != zp or not math.isclose(float(dev.scale), scale,
                                                         rel_tol=1e-6, abs_tol=1e-30):
            raise TinyDeployError(
                "protocol_error",
                problem=f"device {side} '{host.name}' has scale {dev.scale:.8g}, zero point "
                        f"{dev.zero_point} but the model's has {scale:.8g}, {zp}")


def check_model_status(info: Any, facts: ModelFacts, flavour: str = "reference",
                       native: bool = False) -> None:
    """A firmware whose model did not start says why in its HELLO (model status): an
    ``AllocateTensors()`` failure is ``arena_too_small`` naming the arena it had and the
    least it needs (the Cortex-M prediction for the library's kernels, at least one byte
    more than it had); any other status is a ``protocol_error`` naming it."""
    from .protocol import MODEL_STATUS, STATUS_ALLOCATE_FAILED

    status = int(getattr(info, "model_status", 0) or 0)
    if status == 0:
        return
    size = int(info.arena_size)
    if status == STATUS_ALLOCATE_FAILED and getattr(info, "runtime", "tflm") == "tflm":
        needed = arena_needed(facts, size, flavour, native)
        raise TinyDeployError("arena_too_small", size=size, needed=needed,
                              fix="the firmware's AllocateTensors() failed: "
                                  + ARENA_FIX.format(needed=needed))
    raise TinyDeployError("protocol_error", problem="the device's model did not start: "
                          + MODEL_STATUS.get(status, f"status {status}"))


def arena_needed(facts: ModelFacts, size: int, flavour: str, native: bool = False) -> int:
    """The least arena the model needs, as the host knows it: the Cortex-M prediction for
    the library's kernels (``native``: at least the 64-bit host's), at least one byte more
    than ``size`` (which failed)."""
    from ..arena.library import FLAVOURS
    from ..arena.predict import predict_flavour, predict_host64

    pred = predict_flavour(facts, flavour if flavour in FLAVOURS else "reference")
    return max(size + 1, pred, predict_host64(facts) if native else 0)


ARENA_FIX = ("regenerate with --arena auto (or at least --arena {needed}; --arena tuned "
             "--tflm-src DIR measures it)")
_LOST = ("port_error", "device_timeout", "device_reset", "protocol_error")


@contextlib.contextmanager
def crash_in_allocation(facts: ModelFacts, tree: Any, arena_bytes: int | None,
                        native: bool = False) -> Iterator[dict[str, bool]]:
    """Around the first HELLO of a TFLM firmware built here with ``arena_bytes``: set
    ``state["up"] = True`` once the device answered. A device lost before that (gone,
    silent, resetting) whose arena is below the prediction for ``tree``'s kernels crashed
    in ``AllocateTensors()`` -- TFLM of January 2023 (Chirale_TensorFlowLite 2.0.0)
    dereferences a failed temp allocation instead of failing -- and is reported as
    ``arena_too_small``; anything else passes unchanged."""
    state = {"up": False}
    try:
        yield state
    except TinyDeployError as exc:
        if state["up"] or tree is None or arena_bytes is None or exc.code not in _LOST:
            raise
        needed = arena_needed(facts, arena_bytes, str(tree.flavour), native)
        if needed == arena_bytes + 1:
            raise  # not below the prediction: the loss has another cause
        raise TinyDeployError(
            "arena_too_small", size=arena_bytes, needed=needed,
            fix="the firmware stopped in AllocateTensors() (" + str(tree.name) + " crashes "
                "on a failed allocation instead of reporting it): "
                + ARENA_FIX.format(needed=needed)) from exc


# --- device connection -------------------------------------------------------------------
@contextlib.contextmanager
def open_device(facts: ModelFacts, port: str | None, board: str | None,
                workdir: Path, profile: bool = False, runtime: str = "c",
                tflm_src: Any = None, arena_bytes: int | None = None) -> Iterator[str]:
    """Yield a serial port: the given one, or one served by a pseudo-board (sim, native,
    qemu-cm4). ``profile``: a profiling build writing ``workdir/profile.txt`` (native,
    qemu-cm4). ``runtime="tflm"`` builds the generated TFLite Micro firmware for native /
    qemu-cm4 against the TFLM tree ``tflm_src`` (a path, a ``TflmTree`` or None for
    ``$TINYDEPLOY_TFLM_SRC``) instead of the C runtime, with an arena of ``arena_bytes``
    (default: :func:`tflm_arena` for ``--arena auto``)."""
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
                          tflm=tree, arena_bytes=arena_bytes) as proc:
            yield proc.port
    elif b.emulated:
        from .qemu import start_qemu

        with start_qemu(facts, workdir, b, profile=profile, tflm=tree,
                        arena_bytes=arena_bytes) as proc:
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
    if runtime not in ("c", "tflm"):
        raise TinyDeployError("bad_argument", problem=f"unknown --runtime {runtime!r}",
                              fix="choose one of: c, tflm")
    if runtime != "tflm" or not board:
        return None
    from ..boards import get_board
    from .tflm_build import TflmTree, find_tflm_tree

    b = get_board(board)
    if not (b.native or b.emulated):
        return None
    return tflm_src if isinstance(tflm_src, TflmTree) else find_tflm_tree(tflm_src, board=b.id)
