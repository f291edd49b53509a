"""The int8 conv / depthwise / FC kernel variants and the data layout each one reads.

Every variant is its own C entry point (firmware/td_kernels.h has the same table): the
generator picks one per layer, emits the constants in the layouts that variant declares,
and ``check_call`` refuses a call whose arrays are in another layout. There is no silent
fallback inside the kernels, so a layout can never be read as another.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import TinyDeployError

PLAIN = "plain"  # the tensor's own layout
INTERLEAVED4 = "interleaved4"  # emit.interleave_rows: rows in groups of four
BANDS4 = "bands4"  # fc_stream.bands4_layout: interleaved4 per column slice (FC streaming)
DW16 = "dw16"  # emit.dw16_layout: depthwise weights as int16 pairs per 4 channels and tap
PAIRS16 = "pairs16"  # emit_int16.pair_layout (the 16x8 fast kernels' own structs)
RQ = "rq"  # {mult, -shift - 1} pairs, every shift <= -1 (td_kernels.h)
RQ_GENERAL = "rq_general"  # the same pairs, shifts >= 0 allowed
RQ4 = "rq4"  # {mult, -shift - 1, lo, hi} quads: rq plus its rounding constant (rq4_quads)
RQ4_GENERAL = "rq4_general"  # the same quads, shifts >= 0 allowed
MULT_SHIFT = "mult_shift"  # TFLM's QuantizeMultiplier arrays


@dataclass(frozen=True)
class Variant:
    """One kernel entry point: the layout of its filter (the struct field ``filter_field``),
    its requantization form and the struct fields it needs set (non-zero)."""

    function: str
    filter_layout: str
    requant: str
    needs: tuple[str, ...] = ()
    filter_field: str = "filter"


VARIANTS: dict[str, Variant] = {v.function: v for v in (
    Variant("td_conv2d_fast", INTERLEAVED4, RQ4, ("bias_eff",)),
    Variant("td_conv2d_fastg", INTERLEAVED4, RQ4_GENERAL, ("bias_eff",)),
    # an unpadded 1x1 of one input channel (interleaved4 of [out_c][1] is [out_c] in order)
    Variant("td_conv2d_1x1c1", INTERLEAVED4, RQ4, ("bias_eff",)),
    Variant("td_conv2d_ref", PLAIN, MULT_SHIFT),
    Variant("td_depthwise_conv2d_fastw", DW16, RQ4, filter_field="filter_w"),
    Variant("td_depthwise_conv2d_fastwg", DW16, RQ4_GENERAL, filter_field="filter_w"),
    Variant("td_fully_connected_fast", INTERLEAVED4, RQ, ("bias_eff",)),
    Variant("td_fully_connected_fastg", INTERLEAVED4, RQ_GENERAL, ("bias_eff",)),
    Variant("td_fully_connected_ref", PLAIN, MULT_SHIFT),
    # the weights in place (tinydeploy's TFLM kernel, firmware/td_tflm_fc.cpp)
    Variant("td_fully_connected_plain", PLAIN, RQ, ("bias_eff",)),
    Variant("td_fully_connected_plaing", PLAIN, RQ_GENERAL, ("bias_eff",)),
    # FULLY_CONNECTED streaming (fc_stream.py): the struct read by begin / accum / end
    Variant("td_fc_stream_end", BANDS4, RQ, ("bias_eff",)),
    Variant("td_fc_stream_endg", BANDS4, RQ_GENERAL, ("bias_eff",)),
)}


def rq_pairs(pairs: Sequence[tuple[int, int]]) -> list[int]:
    """TFLM (multiplier, shift) per channel as the fast variants' flat ``rq`` table.

    A zero multiplier (a dead channel, or a scale QuantizeMultiplier flushes to 0) becomes
    {0, 0}: td_requant_rq then yields 0, TFLM's result for it."""
    return [v for m, s in pairs for v in (m, -s - 1 if m else 0)]


def rq4_quads(rq: Sequence[int]) -> list[int]:
    """An ``rq`` table as {mult, code, lo, hi} quads (variants.RQ4): lo/hi the int32 halves
    of td_requant_rq's 64-bit rounding constant 2^30 + 2^(31 + code) for code >= 0 (0 for a
    left shift, which does not read them)."""
    out = []
    for m, code in zip(rq[0::2], rq[1::2], strict=True):
        c = (1 << 30) + (1 << (31 + code)) if code >= 0 else 0
        lo, hi = c & 0xFFFFFFFF, c >> 32
        out += [m, code, lo - (1 << 32) if lo >= 1 << 31 else lo, hi]
    return out


def needs_general(rq: Sequence[int], stride: int = 2) -> bool:
    """Whether an ``rq`` table (pairs; quads with stride 4) holds a shift >= 0 (only the
    general variants read it)."""
    return any(code < 0 for code in rq[1::stride])


def fast_variant(base: str, rq: Sequence[int], stride: int = 2) -> str:
    """``base`` (a *_fast or *_fastw entry point) or its general instance for this
    ``rq`` table."""
    return base + "g" if needs_general(rq, stride) else base


def check_call(function: str, fields: Mapping[str, object], layouts: Mapping[str, str],
               arrays: Mapping[str, Sequence[int]], path: object = None) -> Variant:
    """Refuse (a generator bug, nothing generated) a call whose filter array is not in the
    variant's layout, or that lacks the requantization form or fields the variant reads.

    ``layouts``: the layout of every emitted constant array, ``arrays``: the values of the
    emitted int32 arrays, both by C name."""
    v = VARIANTS[function]
    filt = str(fields.get(v.filter_field, ""))
    problems = []
    if layouts.get(filt) != v.filter_layout:
        problems.append(f"filter {filt} is {layouts.get(filt)}, {function} reads "
                        f"{v.filter_layout}")
    has_rq = bool(fields.get("rq"))
    has_ms = bool(fields.get("mult")) and bool(fields.get("shift"))
    quads = v.requant in (RQ4, RQ4_GENERAL)
    if (v.requant != MULT_SHIFT and not has_rq) or (v.requant == MULT_SHIFT and not has_ms):
        problems.append(f"{function} needs the {v.requant} requantization arrays")
    elif v.requant in (RQ, RQ4) and needs_general(arrays.get(str(fields["rq"]), []),
                                                  4 if quads else 2):
        problems.append(f"{function} cannot read a shift >= 0 ({function}g can)")
    elif quads and len(arrays.get(str(fields["rq"]), [])) % 4:
        problems.append(f"{function} reads {{mult, code, lo, hi}} quads")
    problems += [f"{function} needs {f}" for f in v.needs if not fields.get(f)]
    if problems:
        raise TinyDeployError("model_rejected", path=path,
                              problem="kernel layout contract broken: " + "; ".join(problems),
                              fix="report this model to tinydeploy (a generator bug; nothing "
                                  "was written)")
    return v
