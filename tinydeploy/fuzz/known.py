"""Known, not yet fixed differences between the C runtime and TFLM that the fuzzer finds:
data, so a run reports a mismatch matching one as that issue (still a mismatch) and the CI
slice fails only on new ones. Remove an entry when its fix lands."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .paths import LayerPath

__all__ = ["KNOWN", "KnownIssue", "known_issue"]


@dataclass(frozen=True)
class KnownIssue:
    """``id``, what is wrong (TFLM's behaviour vs the C runtime's) and which models show it
    (a predicate over their layers)."""

    id: str
    text: str
    match: Callable[[list[LayerPath]], bool]


KNOWN: tuple[KnownIssue, ...] = (
    KnownIssue(
        "leaky-relu-16x8-multiplier",
        "TFLM versions disagree: tflite-micro 0.dev20261023 (pip, the host reference) "
        "computes the 16x8 LEAKY_RELU multipliers from double scales, the C runtime from "
        "float32 ones like TFLM's golden outputs: 1 LSB at rounding ties (issue 16)",
        lambda ls: any(lp.label == "LEAKY_RELU/16x8" for lp in ls)),
)


def known_issue(layers: list[LayerPath]) -> str:
    """The id of the first known issue the model's layers match, else ''."""
    return next((k.id for k in KNOWN if k.match(layers)), "")
