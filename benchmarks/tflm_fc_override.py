"""tinydeploy's FULLY_CONNECTED override vs the TFLM library's own kernel on qemu-cm4.

For a TFLM tree whose FULLY_CONNECTED lacks per-channel scales (``--tree``, default
``$TINYDEPLOY_TFLM_SRC``; e.g. Chirale_TensorFLowLite 2.0.0 with CMSIS-NN), builds the
generated TFLM firmware for one-layer per-channel FULLY_CONNECTED models twice -- with the
override (what ``generate`` renders) and with ``TINYDEPLOY_NO_OVERRIDES=1`` (the library's
kernel) -- validates both on qemu-cm4 against the TFLM Python runtime and prints the
verdicts and the median emulated instructions per inference. No target: the numbers are for
the report. Measured with Chirale 2.0.0 (README): 512 -> 256: 252,800 vs 258,440 (0.98x);
509 -> 255: 252,120 vs 257,400; the override bit-exact, the library 0 of 40 samples.

    python benchmarks/tflm_fc_override.py [--tree DIR] [--samples 40]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fc_models import fc_model  # noqa: E402

from tinydeploy.device.tflm_build import ENV_SRC, find_tflm_tree  # noqa: E402
from tinydeploy.tflm_overrides import ENV_OFF  # noqa: E402
from tinydeploy.validation import validate  # noqa: E402

LAYERS = ((256, 512), (255, 509))  # (output channels, input depth)


def run(model: Path, data: Path, tree: object, out: Path, override: bool) -> tuple[str, float]:
    """(verdict, median instructions) of one validation on qemu-cm4."""
    os.environ[ENV_OFF] = "0" if override else "1"
    try:
        v = validate(model, data, out, board="qemu-cm4", runtime="tflm", tflm_src=tree)
    finally:
        os.environ.pop(ENV_OFF, None)
    verdict = "PASS" if v.passed else f"FAIL {v.differing}/{v.samples}"
    return verdict, float(np.median(v.cycles if len(v.cycles) else v.time_us))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", default=os.environ.get(ENV_SRC), help="TFLM library tree")
    ap.add_argument("--samples", type=int, default=40)
    args = ap.parse_args()
    tree = find_tflm_tree(args.tree)
    rng = np.random.default_rng(5)
    print(f"{'layer':>12} {'override':>22} {'library kernel':>22} {'ratio':>6}")
    with tempfile.TemporaryDirectory(prefix="td-fc-bench-") as tmp:
        for rows, depth in LAYERS:
            work = Path(tmp) / f"fc{depth}x{rows}"  # data.npz beside the model: its sample
            work.mkdir()
            raw, _ = fc_model(rng, rows=rows, accum=depth, in_shape=[1, depth], keep=False,
                              per_channel=True, bias=True, act="relu")
            model = work / "model.tflite"
            model.write_bytes(raw)
            np.savez(work / "data.npz",
                     x_test=rng.integers(-128, 128, (args.samples, depth), dtype=np.int8))
            on = run(model, work / "data.npz", tree, work / "on", True)
            off = run(model, work / "data.npz", tree, work / "off", False)
            print(f"{depth:>5} -> {rows:<4} {on[0]:>10} {on[1]:>11,.0f} {off[0]:>10} "
                  f"{off[1]:>11,.0f} {on[1] / off[1]:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
