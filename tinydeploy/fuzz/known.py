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
        "layout-fallback",
        "issue 16: conv/FC filters stored in the fast kernels' interleaved layout are read "
        "as row-major by the reference loop that a multiplier 0 or a shift >= 0 selects",
        lambda ls: any(lp.path == "ref-interleaved" for lp in ls)),
    KnownIssue(
        "pad16-zero-point",
        "16x8 PAD fills with the output zero point; TFLM (0.dev20261023) fills int16 "
        "tensors with 0 (only a non-zero int16 zero point shows it)",
        lambda ls: any(lp.label == "PAD/16x8" and "i16-zp" in lp.regimes for lp in ls)),
    KnownIssue(
        "int32-bias-16x8",
        "16x8 CONV_2D/FULLY_CONNECTED with an int32 bias (quantized_bias_type INT32): TFLM "
        "requantizes the int32 sum with the 32-bit MultiplyByQuantizedMultiplier, the C "
        "runtime with the 64-bit one (16-bit multiplier): off by 1 LSB",
        lambda ls: any(lp.label in ("CONV_2D/16x8", "FULLY_CONNECTED/16x8")
                       and "int32-bias" in lp.regimes for lp in ls)),
    KnownIssue(
        "leaky-relu-16x8-multiplier",
        "TFLM versions disagree: tflite-micro 0.dev20261023 (pip, the host reference) "
        "computes the 16x8 LEAKY_RELU multipliers from double scales, the C runtime from "
        "float32 ones like TFLM's golden outputs: 1 LSB at rounding ties (issue 16)",
        lambda ls: any(lp.label == "LEAKY_RELU/16x8" for lp in ls)),
    KnownIssue(
        "strided-slice-shrink-begin-mask",
        "STRIDED_SLICE with shrink_axis_mask and begin_mask on the same axis: TFLM takes "
        "the masked begin (index 0), the C runtime begin[i]",
        lambda ls: any(lp.label.startswith("STRIDED_SLICE/") and "shrink-and-begin-mask"
                       in lp.regimes for lp in ls)),
    KnownIssue(
        "tconv16-input-zero-point",
        "16x8 TRANSPOSE_CONV with a non-zero int16 input zero point: TFLM ignores it, the C "
        "runtime subtracts it",
        lambda ls: any(lp.label == "TRANSPOSE_CONV/16x8" and "i16-zp" in lp.regimes
                       for lp in ls)),
)


def known_issue(layers: list[LayerPath]) -> str:
    """The id of the first known issue the model's layers match, else ''."""
    return next((k.id for k in KNOWN if k.match(layers)), "")
