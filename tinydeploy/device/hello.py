"""The HELLO check that a device runs this model: ``check_device`` refuses a device that
runs another model or expects other tensors, or whose model did not start (an arena too
small); ``crash_in_allocation`` reports a TFLM firmware lost in ``AllocateTensors()`` as
``arena_too_small``. Below the connection layer (``connect``), so host references that
serve a firmware (``hostref_native``) can check it without importing the connection layer.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
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
