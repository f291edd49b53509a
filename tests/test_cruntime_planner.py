"""Offline memory planner and in-place overlap distances of the C runtime."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from tinydeploy.cruntime.graph import Graph, Op, Tensor
from tinydeploy.cruntime.overlap import overlap_distance
from tinydeploy.cruntime.planner import Buffer, lower_bound, plan


def _random_buffers(rng: np.random.Generator, n: int) -> list[Buffer]:
    out = []
    for i in range(n):
        first = int(rng.integers(0, 20))
        out.append(Buffer(i, f"t{i}", int(rng.integers(1, 500)), first,
                          first + int(rng.integers(0, 6))))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_plan_is_valid_and_near_bound(seed: int) -> None:
    bufs = _random_buffers(np.random.default_rng(seed), 25)
    mem = plan(bufs)
    for i, a in enumerate(mem.buffers):
        assert a.offset >= 0 and a.offset + a.size <= mem.size
        for b in mem.buffers[i + 1:]:
            if a.overlaps(b):
                assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset
    assert mem.lower_bound == lower_bound(bufs) <= mem.size <= mem.naive
    assert mem.size <= 1.25 * mem.lower_bound


def test_chain_reaches_lower_bound() -> None:
    sizes = [100, 300, 50, 400, 20]
    bufs = [Buffer(i, f"t{i}", s, i, i + 1) for i, s in enumerate(sizes)]
    mem = plan(bufs)
    assert mem.size == mem.lower_bound == max(a + b for a, b in zip(sizes, sizes[1:], strict=False))
    assert "arena" in mem.summary() and mem.to_dict()["arena_bytes"] == mem.size


def test_pinned_output_overlaps_its_input() -> None:
    x = Buffer(0, "x", 1000, 0, 1)
    y = Buffer(1, "y", 1000, 1, 2, pin=(0, 40))
    z = Buffer(2, "z", 10, 2, 3)
    mem = plan([x, y, z])
    assert y.offset <= x.offset - 40 and mem.size < 2000
    assert mem.lower_bound == 1040


# --- overlap distance, checked by simulating the kernel's access order in shared memory ---
def _conv_graph(kind: str, shape: tuple[int, int, int], f: int, stride: int, pad: int,
                out_c: int, dil: int = 1) -> tuple[Graph, Op]:
    h, w, c = shape
    eff = (f - 1) * dil + 1
    oh = (h + stride - 1) // stride if pad == 0 else (h - eff + stride) // stride
    ow = (w + stride - 1) // stride if pad == 0 else (w - eff + stride) // stride
    if kind == "DEPTHWISE_CONV_2D":
        out_c = c * max(out_c // c, 1)
    x = Tensor(0, "x", (1, h, w, c), "INT8", [1.0], [0])
    y = Tensor(2, "y", (1, oh, ow, out_c), "INT8", [1.0], [0])
    wshape = (out_c, f, f, c) if kind == "CONV_2D" else (1, f, f, out_c)
    wt = Tensor(1, "w", wshape, "INT8", [1.0], [0], np.zeros(wshape, np.int8))
    opts = SimpleNamespace(strideH=stride, strideW=stride, dilationHFactor=dil,
                           dilationWFactor=dil, padding=pad, filterHeight=f, filterWidth=f)
    name = "MAX_POOL_2D" if kind == "POOL" else kind
    op = Op(0, name, [0, 1] if kind != "POOL" else [0], [2], opts)
    if kind == "POOL":
        y = Tensor(2, "y", (1, oh, ow, c), "INT8", [1.0], [0])
    return Graph([x, wt, y], [op], [0], [2]), op


def _simulate(g: Graph, op: Op, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Run a window op over shared memory with the output d below the input; return
    (result in shared memory, result with separate buffers)."""
    x, y = g.t(0), g.t(2)
    _, h, w, c = x.shape
    _, oh, ow, oc = y.shape
    o = op.options
    f = o.filterHeight if op.name == "MAX_POOL_2D" else g.t(1).shape[1]
    from tinydeploy.cruntime.emit import _pad_total

    ph = _pad_total(o.strideH, o.dilationHFactor, h, f, oh)
    pw = _pad_total(o.strideW, o.dilationWFactor, w, f, ow)
    data = np.arange(1, x.size + 1, dtype=np.int64) * 7919
    base = max(d, 0)
    mem = np.zeros(base + x.size + y.size + abs(d) + 1, dtype=np.int64)
    xin, yout = base, base - d
    mem[xin:xin + x.size] = data
    sep = np.zeros(y.size, dtype=np.int64)
    k = 0
    for oy in range(oh):
        for ox in range(ow):
            for ch in range(oc):
                acc_mem = acc_sep = 0
                src_c = range(c) if op.name == "CONV_2D" else [
                    ch // max(oc // c, 1) if op.name == "DEPTHWISE_CONV_2D" else ch]
                for fy in range(f):
                    for fx in range(f):
                        iy = oy * o.strideH - ph + o.dilationHFactor * fy
                        ix = ox * o.strideW - pw + o.dilationWFactor * fx
                        if 0 <= iy < h and 0 <= ix < w:
                            for ic in src_c:
                                idx = (iy * w + ix) * c + ic
                                acc_mem = acc_mem * 31 + int(mem[xin + idx])
                                acc_sep = acc_sep * 31 + int(data[idx])
                mem[yout + k] = acc_mem % 1000003
                sep[k] = acc_sep % 1000003
                k += 1
    return mem[yout:yout + y.size], sep


CASES = [("CONV_2D", (5, 6, 3), 3, 1, 0, 3), ("CONV_2D", (6, 5, 2), 1, 1, 1, 4),
         ("CONV_2D", (7, 7, 2), 3, 2, 0, 2), ("CONV_2D", (6, 6, 2), 2, 1, 1, 1, 2),
         ("DEPTHWISE_CONV_2D", (5, 5, 3), 3, 1, 0, 6), ("DEPTHWISE_CONV_2D", (6, 4, 2), 3, 2, 1, 2),
         ("POOL", (6, 6, 3), 2, 2, 0, 3), ("POOL", (5, 7, 2), 3, 1, 0, 2)]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_overlap_distance_is_safe_and_tight(case: tuple) -> None:
    g, op = _conv_graph(*case)
    d = overlap_distance(op, g)
    assert d is not None
    shared, separate = _simulate(g, op, d)
    np.testing.assert_array_equal(shared, separate)
    shared, separate = _simulate(g, op, d - 1)  # one byte closer clobbers a needed input
    assert not np.array_equal(shared, separate)


def test_elementwise_is_in_place() -> None:
    x = Tensor(0, "x", (1, 4, 4, 3), "INT8", [1.0], [0])
    y = Tensor(1, "y", (1, 4, 4, 3), "INT8", [1.0], [0])
    g = Graph([x, y], [Op(0, "TANH", [0], [1], None)], [0], [1])
    assert overlap_distance(g.ops[0], g) == 0
    g.ops[0].name = "FULLY_CONNECTED"
    assert overlap_distance(g.ops[0], g) is None
