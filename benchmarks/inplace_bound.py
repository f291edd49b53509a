"""How much RAM a single-CONV_2D model needs when its output overwrites its input in place.

For a model that is one CONV_2D (e.g. seanet_conv0: int16 input 1x8x166x2, output
1x2x160x8, 7x7 valid), the input and the output are the application's tensors, each one
contiguous NHWC array. The output is placed at a byte offset D from the input; output
pixels are computed in an order (row-major, column-major, both reversed, rows swapped); a
pixel goes to its place once every input pixel under it has been read for the last time,
until then it waits in a pending buffer. The RAM is then the span of the two tensors plus
the pending buffer's peak. The script prints, per order, the best D and that RAM, next to
TFLM's (arena_used_bytes_cm4 + interpreter) from the ground truth. (No order reaches 0.5x;
the C runtime gets there by running the operator transposed, see
tinydeploy/cruntime/transpose.py: max(input, output) + 32 B.)

    python benchmarks/inplace_bound.py ../shared/reference-models/seanet_conv0.tflite
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tinydeploy import facts as F
from tinydeploy.cruntime.graph import read_graph


def pending_peak(shape_in: tuple[int, ...], shape_out: tuple[int, ...], k: tuple[int, int],
                 item: int, d: int, order: list[tuple[int, int]]) -> int:
    """Peak bytes of computed output pixels waiting for their place (stride 1, valid)."""
    _, ih, iw, ic = shape_in
    _, oh, ow, oc = shape_out
    ib, ob = ic * item, oc * item
    last: dict[tuple[int, int], int] = {}
    for t, (r, x) in enumerate(order):
        for h in range(r, r + k[0]):
            for w in range(x, x + k[1]):
                last[(h, w)] = t
    events = []
    for t, (r, x) in enumerate(order):
        a = d + (r * ow + x) * ob
        dead = t
        for byte in range(max(a, 0), min(a + ob, ih * iw * ib), ib):
            dead = max(dead, last.get(divmod(byte // ib, iw), -1))
        events += [(t, 1), (dead, -1)]
    cur = peak = 0
    for _, e in sorted(events, key=lambda e: (e[0], -e[1])):
        cur += e
        peak = max(peak, cur)
    return peak * ob


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--step", type=int, default=16, help="offsets D tried, in bytes")
    a = ap.parse_args()
    g = read_graph(F.load(a.model))
    op = g.ops[0]
    if len(g.ops) != 1 or op.name != "CONV_2D" or int(op.options.strideH) != 1:
        raise SystemExit("expects a model of one stride-1 CONV_2D")
    x, w, y = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    if x.shape[1] - y.shape[1] + 1 != w.shape[1] or x.shape[2] - y.shape[2] + 1 != w.shape[2]:
        raise SystemExit("expects VALID padding")
    n_in, n_out = x.size * x.itemsize, y.size * y.itemsize
    _, oh, ow, _ = y.shape
    orders = {
        "row-major": [(r, c) for r in range(oh) for c in range(ow)],
        "column-major": [(r, c) for c in range(ow) for r in range(oh)],
        "row-major reversed": [(r, c) for r in reversed(range(oh)) for c in reversed(range(ow))],
        "column-major reversed": [(r, c) for c in reversed(range(ow))
                                  for r in reversed(range(oh))],
        "last row first": [(r, c) for r in reversed(range(oh)) for c in range(ow)],
    }
    gt_path = a.model.parent / "ground_truth.json"
    gt = json.loads(gt_path.read_text()).get(a.model.stem) if gt_path.is_file() else None
    tflm = (gt["arena_used_bytes_cm4"] + gt["cm4_bss"] - gt["cm4_arena_in_bss"]) if gt else None
    print(f"{a.model.stem}: input {n_in} B, output {n_out} B"
          + (f", TFLM {tflm} B (0.5x = {tflm // 2} B)" if tflm else ""))
    for name, order in orders.items():
        best = min((max(n_in, d + n_out) - min(0, d)
                    + pending_peak(x.shape, y.shape, (w.shape[1], w.shape[2]), x.itemsize,
                                   d, order), d)
                   for d in range(-n_in, n_in + 1, a.step))
        ratio = f" = {best[0] / tflm:.3f}x TFLM" if tflm else ""
        print(f"  {name:22} best offset {best[1]:6d}: {best[0]} B{ratio}")


if __name__ == "__main__":
    main()
