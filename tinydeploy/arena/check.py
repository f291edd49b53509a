"""Checks an explicit ``generate --arena N`` against what the model needs (layer 6 of
:mod:`tinydeploy.arena`, choice).

* below the **measured** planned head (activation tensors and kernel scratch buffers laid
  out by TFLM's greedy planner, the same on every ABI; measured with the TFLM Python
  runtime): the firmware cannot allocate -> ``does_not_fit`` error;
* below the Cortex-M **prediction** (:mod:`.search`): probably too small
  (``AllocateTensors()`` fails on the device) -> a warning naming both numbers.
"""

from __future__ import annotations

from ..errors import TinyDeployError
from ..facts import ModelFacts
from ..log import log
from .library import FLAVOURS, REFERENCE
from .predict import predict_flavour
from .search import arena


def check_explicit_arena(facts: ModelFacts, size: int,
                         flavours: tuple[str, ...] = (REFERENCE,)) -> str:
    """Warn or refuse an explicit arena size.

    Args:
        facts: the model.
        size: the ``--arena`` byte count.
        flavours: kernel flavours of the libraries the firmware is for (the largest
            prediction counts; an unmodelled library counts as ``reference``).

    Returns:
        A note for the plan ("" when the size is at least the prediction).

    Raises:
        TinyDeployError: ``does_not_fit`` when ``size`` is below the measured planned head.
    """
    result = arena(facts, target="cortex-m")
    head = int(result.host64_breakdown.get("head", 0))
    predicted = int(result.cortex_m_bytes or result.arena_bytes)
    for flavour in set(flavours) & set(FLAVOURS) - {REFERENCE}:
        predicted = max(predicted, predict_flavour(facts, flavour))
    if head and size < head:
        raise TinyDeployError(
            "does_not_fit", what=f"model {facts.name}", board=f"a {size} B arena (--arena)",
            detail=f"its activations and scratch buffers alone take {head} B "
                   f"(measured); the Cortex-M prediction is {predicted} B",
            fix=f"pass --arena auto or at least --arena {predicted}")
    if size < predicted:
        log.warning("--arena %d is below the Cortex-M prediction of %d B (activations %d B "
                    "measured): AllocateTensors() will probably fail on the device; "
                    "use --arena auto or at least %d", size, predicted, head, predicted)
        return f"below the Cortex-M prediction of {predicted} B"
    return ""
