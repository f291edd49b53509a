"""FULLY_CONNECTED streaming: the input of a FULLY_CONNECTED is never stored whole.

When an int8 FULLY_CONNECTED reads -- directly, or through RESHAPE / EXPAND_DIMS / SQUEEZE
aliases and activations fused into the producer (fusion.py) -- the output of an int8
CONV_2D, DEPTHWISE_CONV_2D, MAX_POOL_2D or AVERAGE_POOL_2D, and is its only reader, the
producer runs in row bands into a small band buffer (its kernels take explicit ``in_h`` /
``out_h`` / ``pad_h`` as in patch.py's stages; its input stays whole, so nothing is
computed twice) and after each band ``td_fc_stream_accum`` adds the products of that slice
of the FC's input to the FC's int32 sums, started at ``bias_eff`` (bias + input offset x row
sum, as ``td_fully_connected_fast``). ``td_fc_stream_end`` requantizes once as the fast FC
does. The same int32 sums in another grouping, so bit-exact by construction (with the same
wrap-around as the reference where a sum leaves int32).

The filter is stored as ``bands4`` (variants.py): the columns cut where the bands cut the
input, each slice interleaved by four rows on its own. The block runs at the producer's
place (the FC's output is live from there); the plan holds the accumulators (4 x out_c
bytes, word-aligned by the code) and the band buffer (the tallest band's rows) for that
operator instead of the whole input tensor.

Not streamed (the FC runs as before): a filter zero point, a bias that cannot be folded
into int32 (the reference loop), int16 / int64 tensors, more than one batch, an input of
another quantization than the producer's output, a producer output with other readers or
that is a model output, producers inside a patch stage or run transposed (transpose.py).

Policy (:func:`choose`): a stream is kept when it lowers the arena. Its band height: the
fewest rows giving at most as many bands as ~1 % of the two operators' multiply-accumulates
pays for (``MAX_OVERHEAD``, ``BAND_CALL_INSTR`` instructions a band), doubled while that
keeps the arena as small. ``codegen.build(..., speed_first=True)`` streams nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from .ctext import c_struct
from .emit_base import SCRATCH_ID, folded_bias, interleave_rows
from .emit_ext import ALIAS_OPS
from .fusion import fusions
from .graph import Graph, Op
from .patch import parse_call, row_window, rows_needed
from .planner import Buffer
from .support import ext_reason
from .variants import BANDS4, check_call, needs_general

if TYPE_CHECKING:
    from .emit import Emitter

PRODUCERS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D"})
STREAM_ID = 2 * SCRATCH_ID  # buffer ids: STREAM_ID + the FC's index (codegen: not "wide")
# instructions a band adds (qemu-cm4, micro_speech: 25 bands of one row +7,070, 5 of five
# +1,190 over one band): the producer's call and set-up, the accumulate call
BAND_CALL_INSTR = 300
MAX_OVERHEAD = 0.01  # of the producer's and the FC's multiply-accumulates


@dataclass(frozen=True)
class FcStream:
    """FULLY_CONNECTED ``fc`` fed band by band by ``producer`` (input tensor ``x``):
    ``chain`` the tensors from the producer's output to the FC's input (none stored),
    ``between`` the alias / fused operators on the way, ``height`` output rows a band."""

    producer: int
    fc: int
    x: int
    chain: tuple[int, ...]
    between: tuple[int, ...]
    out_h: int
    row_bytes: int
    out_c: int
    height: int = 1

    @property
    def rows(self) -> list[tuple[int, int]]:
        """(first output row, row count) of each band."""
        return [(r, min(self.height, self.out_h - r)) for r in range(0, self.out_h, self.height)]

    @property
    def bands(self) -> int:
        return len(self.rows)

    @property
    def buffer_id(self) -> int:
        return STREAM_ID + self.fc

    @property
    def buffer_bytes(self) -> int:
        """The int32 sums (word-aligned in the generated code: up to 3 bytes before them)
        and the band buffer (the tallest band's rows) after them."""
        return 3 + 4 * self.out_c + self.height * self.row_bytes

    @property
    def ops(self) -> tuple[int, ...]:
        """Every operator the block runs (producer, the ones between, the FC)."""
        return (self.producer, *self.between, self.fc)

    def buffer(self) -> Buffer:
        """The sums and the band buffer, live for the producer's operator (the plan may
        place any buffer at any byte: in-place pins need it; the code aligns the sums)."""
        return Buffer(self.buffer_id, f"op {self.fc} FC streaming sums + band",
                      self.buffer_bytes, self.producer, self.producer)


def _readers(g: Graph) -> dict[int, int]:
    out: dict[int, int] = {}
    for op in g.ops:
        for i in op.inputs:
            out[i] = out.get(i, 0) + 1
    return out


def _fc_streamable(g: Graph, k: int) -> bool:
    """An int8 FC the fast path would run with one batch (the stream's requirements)."""
    op = g.ops[k]
    if op.name != "FULLY_CONNECTED" or ext_reason(g, op) is None:  # None: int16 (extension)
        return False
    x, y, w = g.t(op.inputs[0]), g.t(op.outputs[0]), g.t(op.inputs[1])
    bias = g.t(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    if x.dtype != "INT8" or y.dtype != "INT8" or w.dtype != "INT8" or w.data is None \
            or len(w.shape) != 2 or any(w.zero_points) or x.size != w.shape[1] \
            or int(getattr(op.options, "weightsFormat", 0) or 0) != 0 \
            or (bias is not None and (bias.dtype != "INT32" or bias.data is None)):
        return False
    return folded_bias(w.data, bias, -x.zp) is not None


def _producer_ok(g: Graph, p: Op, t: int, fc_in: int, busy: Sequence[int]) -> bool:
    """Whether operator p, writing t, can run in row bands (int8 NHWC, one batch, outside a
    patch stage, t quantized as the FC's input ``fc_in``)."""
    x, y, z = g.t(p.inputs[0]), g.t(t), g.t(fc_in)
    return (p.name in PRODUCERS and p.index not in busy and ext_reason(g, p) is not None
            and not x.is_const and x.dtype == y.dtype == "INT8" and len(x.shape) == 4
            and len(y.shape) == 4 and x.shape[0] == y.shape[0] == 1
            and (y.scale, y.zp) == (z.scale, z.zp))


def candidates(g: Graph, busy: Sequence[int] = ()) -> list[FcStream]:
    """Every FULLY_CONNECTED that can be streamed (height 1; ``busy``: operators of a
    patch stage, left alone)."""
    producer = {t: op for op in g.ops for t in op.outputs}
    readers = _readers(g)
    fused = fusions(g)
    out = []
    for op in g.ops:
        if op.index in busy or not _fc_streamable(g, op.index):
            continue
        t, chain, between = op.inputs[0], [], []
        while readers.get(t) == 1 and t not in g.outputs and t not in g.inputs \
                and not g.t(t).variable and t in producer:
            chain.append(t)
            p = producer[t]
            if p.index in fused or (p.name in ALIAS_OPS and not g.t(p.inputs[0]).is_const):
                between.append(p.index)  # shares its input's bytes: look further back
                t = p.inputs[0]
                continue
            if _producer_ok(g, p, t, op.inputs[0], busy):
                _, oh, ow, oc = g.t(t).shape
                out.append(FcStream(p.index, op.index, p.inputs[0], tuple(chain),
                                    tuple(sorted(between)), oh, ow * oc,
                                    g.t(op.outputs[0]).size))
            break
    return out


def _macs(g: Graph, s: FcStream) -> int:
    """Multiply-accumulates of the producer and the FC (the work the band calls split)."""
    p = g.ops[s.producer]
    taps = (g.t(p.inputs[1]).size // g.t(p.inputs[1]).shape[0] if p.name == "CONV_2D"
            else g.t(p.inputs[1]).size // g.t(p.inputs[1]).shape[-1]
            if p.name == "DEPTHWISE_CONV_2D" else int(p.options.filterHeight)
            * int(p.options.filterWidth))
    return s.out_h * s.row_bytes * (taps + s.out_c)


def choose(g: Graph, found: Sequence[FcStream],
           arena: Callable[[tuple[FcStream, ...]], int]) -> tuple[tuple[FcStream, ...], int]:
    """The streams to use and the arena without any: each candidate (in order) with the
    largest band height among those giving its smallest arena (``arena(streams)``: the
    plan's size), kept where that arena is below the one without it."""
    chosen: tuple[FcStream, ...] = ()
    base = size = arena(chosen)
    for s in found:
        bands = max(1, int(_macs(g, s) * MAX_OVERHEAD) // BAND_CALL_INSTR)
        low = max(1, -(-s.out_h // bands))
        heights, h = [], low
        while h < s.out_h:
            heights.append(h)
            h *= 2
        best: tuple[int, int] | None = None  # (arena, -height)
        for h in heights:
            a = arena((*chosen, replace(s, height=h)))
            if best is None or (a, -h) < best:
                best = (a, -h)
        if best is not None and best[0] < size:
            chosen, size = (*chosen, replace(s, height=-best[1])), best[0]
    return chosen, base


def bands4_layout(w: np.ndarray, s: FcStream) -> np.ndarray:
    """The filter [out_c][K] as ``bands4`` (variants.py, td_kernels.h): each band's column
    slice interleaved by four rows (emit_base.interleave_rows), the slices in order."""
    return np.concatenate([interleave_rows(np.asarray(w)[:, r * s.row_bytes:(r + n) * s.row_bytes])
                           for r, n in s.rows])


def _fc_struct(em: Emitter, s: FcStream, p: str) -> str:
    """Declare the FC's ``td_fc_params`` (bands4 filter, rq pairs, bias_eff); its end call."""
    g = em.g
    op = g.ops[s.fc]
    x, w = g.t(op.inputs[0]), g.t(op.inputs[1])
    bias = g.t(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    fields, pairs = em.fc_fields(op)
    fields.update(em.requant(p, pairs, True), bias=0,
                  filter=em.weights(p + "_filter", bands4_layout(w.data, s), BANDS4),
                  bias_eff=em.int_array(p + "_bias_eff", folded_bias(w.data, bias, -x.zp)))
    fn = "td_fc_stream_end" + ("g" if needs_general(em.arrays[str(fields["rq"])]) else "")
    check_call(fn, fields, em.layouts, em.arrays, g.path)
    em.decls.append(c_struct("td_fc_params", p, fields))
    return fn


def emit(em: Emitter, s: FcStream, k: int) -> str:
    """Operator k's C text: the band loop for the producer, a comment for the others."""
    if k != s.producer:
        return f"/* FC streaming: in op {s.producer}'s band loop */"
    g = em.g
    prod = g.ops[s.producer]
    loc = em.loc
    em.loc = lambda i: "band" if i in s.chain else loc(i)
    try:
        call = em.emit(prod)
    finally:
        em.loc = loc
    fn, params, keep = parse_call(prod, call)  # (params, [tables,] in, out)
    p = f"td_p{s.fc}"
    end = _fc_struct(em, s, p)
    stride, _, _, pt = row_window(prod, g)
    x_row = int(np.prod(g.t(s.x).shape[2:]))
    table = []
    for r0, n in s.rows:
        a, rows_in = rows_needed(prod, g, r0, n)
        table.append(f"{{{rows_in}, {n}, {max(pt - r0 * stride, 0)}, {a * x_row}}}")
    ctype = "td_pool_params" if "POOL" in prod.name else "td_conv_params"
    y = loc(g.ops[s.fc].outputs[0])
    return "\n".join([
        f"{{ /* ops {', '.join(map(str, s.ops))}: {prod.name} in {s.bands} row bands of "
        f"{s.height}, each band's slice summed into FULLY_CONNECTED {s.fc} (FC streaming) */",
        f"    static const int32_t rows[{s.bands}][4] = {{{', '.join(table)}}};",
        "    int32_t *const acc = (int32_t *)(void *)(((uintptr_t)"
        f"{loc(s.buffer_id)} + 3u) & ~(uintptr_t)3u);",
        f"    int8_t *const band = (int8_t *)(void *)(acc + {s.out_c});",
        f"    {ctype} q = {params};",
        "    int32_t k, k0 = 0;",
        f"    td_fc_stream_begin(&{p}, acc);",
        f"    for (k = 0; k < {s.bands}; ++k) {{",
        "      q.in_h = rows[k][0];",
        "      q.out_h = rows[k][1];",
        "      q.pad_h = rows[k][2];",
        f"      {fn}(&q, {', '.join([*keep, f'{loc(s.x)} + rows[k][3]'])}, band);",
        f"      td_fc_stream_accum(&{p}, k0, rows[k][1] * {s.row_bytes}, band, acc);",
        f"      k0 += rows[k][1] * {s.row_bytes};",
        "    }",
        f"    {end}(&{p}, acc, {y});",
        "  }"])


def lifetimes(g: Graph, streams: Sequence[FcStream], alias: dict[int, int],
              first: dict[int, int]) -> None:
    """Lifetimes under streaming (``first``: root tensor -> first operator, codegen._storage):
    the chain tensors leave the plan, the FC's output is written at the producer's operator."""
    for s in streams:
        for t in s.chain:
            first.pop(alias.get(t, t), None)
        r = alias.get(g.ops[s.fc].outputs[0], g.ops[s.fc].outputs[0])
        if r in first:
            first[r] = min(first[r], s.producer)


def describe(streams: Sequence[FcStream]) -> list[dict[str, int]]:
    """memory.json's ``fc_streaming`` entries."""
    return [{"producer": s.producer, "fc": s.fc, "bands": s.bands, "band_rows": s.height,
             "band_bytes": s.height * s.row_bytes, "acc_bytes": 4 * s.out_c} for s in streams]
