"""Connecting to the device under validation: the port of a flashed board, or a pseudo-board
started here (sim, native, qemu-cm4), and the HELLO check that it runs this model.

``open_device`` yields a serial port; ``check_device`` refuses a device that runs another
model or expects other tensors; ``tflm_tree_for`` finds the TFLM tree a ``--runtime tflm``
build of native / qemu-cm4 needs.
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


def check_device(info: Any, facts: ModelFacts, port: str) -> None:
    """Refuse a device that runs another model or expects other tensors."""
    device_hash = str(info.model_sha256).lower()
    if device_hash != facts.sha256:
        raise TinyDeployError("hash_mismatch", device=device_hash[:16] or "?",
                              path=facts.path, host=facts.sha256[:16], port=port)
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


# --- device connection -------------------------------------------------------------------
@contextlib.contextmanager
def open_device(facts: ModelFacts, port: str | None, board: str | None,
                workdir: Path, profile: bool = False, runtime: str = "c",
                tflm_src: Any = None) -> Iterator[str]:
    """Yield a serial port: the given one, or one served by a pseudo-board (sim, native,
    qemu-cm4). ``profile``: a profiling build writing ``workdir/profile.txt`` (native,
    qemu-cm4). ``runtime="tflm"`` builds the generated TFLite Micro firmware for native /
    qemu-cm4 against the TFLM tree ``tflm_src`` (a path, a ``TflmTree`` or None for
    ``$TINYDEPLOY_TFLM_SRC``) instead of the C runtime."""
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
                          tflm=tree) as proc:
            yield proc.port
    elif b.emulated:
        from .qemu import start_qemu

        with start_qemu(facts, workdir, b, profile=profile, tflm=tree) as proc:
            yield proc.port
    else:
        from .flashing import find_port

        yield find_port(b)


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
