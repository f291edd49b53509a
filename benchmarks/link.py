"""Benchmark: chunked transfers over a pseudo-terminal (protocol version 2).

For reference models whose tensors exceed one frame (person_detect: 9,216 input bytes;
simple_add_model: 2 x 16,384 in, 16,384 out) it runs inferences on the simulated board
(several frame sizes) and on the native board (the C runtime + td_protocol.c), and prints
per inference: median wall time, bytes on the wire each way, frames (round trips), and the
wire efficiency = tensor bytes / bytes on the wire (target >= 0.95 for the input; the
output direction also carries one acknowledgement per input chunk). ``at 115200`` is the
time those bytes take on a 115200-baud UART (10 bits per byte). Usage:
``python benchmarks/link.py [--runs N] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tinydeploy.device.link import Link
from tinydeploy.device.sim import start_sim
from tinydeploy.facts import load

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def _inputs(name: str, n_inputs: int) -> list[np.ndarray]:
    if n_inputs == 1:
        return [np.load(DATA / f"{name}.inputs.npy")]
    return [np.load(DATA / f"{name}.inputs_{k}.npy") for k in range(n_inputs)]


def _measure(port: str, xs: list[np.ndarray], runs: int) -> dict[str, Any]:
    with Link(port, timeout=5.0) as link:
        info = link.hello()
        times, sent, recv = [], [], []
        frames = 0
        for i in range(runs):
            data = b"".join(x[i % len(x)].tobytes() for x in xs)
            s0, r0, t0 = link.bytes_sent, link.bytes_received, time.perf_counter()
            seq0 = link._seq
            link.infer(data)
            times.append(time.perf_counter() - t0)
            sent.append(link.bytes_sent - s0)
            recv.append(link.bytes_received - r0)
            frames = (link._seq - seq0) % 0xFFFF
    up, down = statistics.median(sent), statistics.median(recv)
    return {"max_payload": info.max_payload, "input_bytes": info.input_bytes,
            "output_bytes": info.output_bytes, "median_ms": 1000 * statistics.median(times),
            "frames": frames, "bytes_sent": up, "bytes_received": down,
            "input_efficiency": info.input_bytes / up, "output_efficiency": info.output_bytes
            / down, "uart_115200_s": 10 * (up + down) / 115200}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = ap.parse_args(argv)
    rows: list[dict[str, Any]] = []
    cases = [("person_detect", "sim", 256), ("person_detect", "sim", 1024),
             ("person_detect", "sim", 4096), ("person_detect", "native", 1024),
             ("simple_add_model", "sim", 1024)]
    for name, board, payload in cases:
        facts = load(DATA / f"{name}.tflite")
        xs = _inputs(name, len(facts.inputs))
        if board == "sim":
            with start_sim(facts, max_payload=payload) as proc:
                row = _measure(proc.port, xs, args.runs)
        else:
            from tinydeploy.device.native import start_native

            with tempfile.TemporaryDirectory() as tmp, \
                    start_native(facts, Path(tmp)) as proc:
                row = _measure(proc.port, xs, args.runs)
        rows.append({"model": name, "board": board, **row})
    print(f"{'model':<17} {'board':<6} {'frame':>5} {'in B':>6} {'out B':>6} {'frames':>6} "
          f"{'ms':>7} {'in eff':>6} {'out eff':>7} {'115200 s':>8}")
    for r in rows:
        print(f"{r['model']:<17} {r['board']:<6} {r['max_payload']:>5} {r['input_bytes']:>6} "
              f"{r['output_bytes']:>6} {r['frames']:>6} {r['median_ms']:>7.1f} "
              f"{r['input_efficiency']:>6.3f} {r['output_efficiency']:>7.3f} "
              f"{r['uart_115200_s']:>8.2f}")
    ok = all(r["input_efficiency"] >= 0.95 for r in rows if r["max_payload"] >= 1024)
    print(f"input efficiency >= 0.95 at frames >= 1024 B: {'yes' if ok else 'NO'}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
