"""Static C-runtime arena vs TFLM's measured minimum arena on Cortex-M4 (reference models).

Prints, per reference model, the offline memory plan of the interpreter-free C runtime
(``tinydeploy.cruntime``), its liveness lower bound, the weights it carries and the
``min_arena_cm4`` measured with TFLM (tests/data/ground_truth.json), then the overall ratio
sum(plan) / sum(min_arena_cm4). Target: <= 0.5.

    python benchmarks/memory.py [--data tests/data] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from tinydeploy.cruntime import generate_c
from tinydeploy.facts import load

TARGET = 0.5


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parent.parent
                    / "tests" / "data")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = ap.parse_args(argv)
    gt = json.loads((args.data / "ground_truth.json").read_text())
    rows = []
    print(f"{'model':18} {'plan':>7} {'bound':>7} {'no-reuse':>9} {'weights':>8} "
          f"{'tflm_cm4':>9} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in sorted(gt):
            facts = load(args.data / f"{name}.tflite")
            res = generate_c(facts, Path(tmp) / name, tflm_arena=False)
            tflm = int(gt[name]["min_arena_cm4"])
            row = {"model": name, "plan": res.plan.size, "lower_bound": res.plan.lower_bound,
                   "no_reuse": res.plan.naive, "weights": res.weight_bytes,
                   "min_arena_cm4": tflm, "ratio": res.plan.size / tflm}
            rows.append(row)
            print(f"{name:18} {row['plan']:7d} {row['lower_bound']:7d} {row['no_reuse']:9d} "
                  f"{row['weights']:8d} {tflm:9d} {row['ratio']:6.3f}")
    total = sum(r["plan"] for r in rows) / sum(r["min_arena_cm4"] for r in rows)
    print(f"overall ratio sum(plan)/sum(min_arena_cm4) = {total:.3f} (target <= {TARGET})")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "overall_ratio": total}, indent=2))
    return 0 if total <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
