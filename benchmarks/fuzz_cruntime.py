"""Differential fuzzing of the C runtime at scale (issue 16).

Random int8 and 16x8 models (every operator the C runtime has, shapes and quantization
regimes of ``tinydeploy.fuzz``) run on the host reference (TFLM's Python interpreter) and
on the C runtime -- the portable build on this machine (``native``) and the DSP build on
qemu-cm4 -- compared byte for byte. Prints progress, the coverage table (operator x kernel
path x regime: models run, mismatches), what was not covered and models/second; saves every
mismatching model and the shrunk minimal ones under ``--out``. Exit status 1 on any
mismatch (or, with ``--strict-coverage``, on a missing operator/path/regime).

    python benchmarks/fuzz_cruntime.py --models 5000 --seed 1 --target both --out runs/fuzz
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

from tinydeploy.fuzz.known import KNOWN
from tinydeploy.fuzz.report import missing, table
from tinydeploy.fuzz.run import fuzz
from tinydeploy.fuzz.tflm import TARGET as TFLM_TARGET


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=500, help="random models (default 500)")
    ap.add_argument("--seed", type=int, default=1, help="first seed (models use seed..)")
    ap.add_argument("--target", choices=["native", "qemu-cm4", "both"], default="native")
    ap.add_argument("--qemu-every", type=int, default=1, metavar="K",
                    help="with --target both: every K-th model also on qemu-cm4")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: temp)")
    ap.add_argument("--batch", type=int, default=150, help="models per program/image")
    ap.add_argument("--shrink", type=int, default=3,
                    help="mismatches shrunk per kind and target (default 3)")
    ap.add_argument("--jobs", type=int, default=2, help="parallel compilers")
    ap.add_argument("--tflm-every", type=int, default=50, metavar="K",
                    help="with $TINYDEPLOY_TFLM_SRC set: every K-th model also runs as "
                         "generated TFLM firmware on native (0: never)")
    ap.add_argument("--json", type=Path, default=None, help="write the summary as JSON")
    ap.add_argument("--allow-known", action="store_true",
                    help="exit 0 when every mismatch matches a known issue (fuzz/known.py)")
    ap.add_argument("--strict-coverage", action="store_true",
                    help="also fail when an operator, path or regime was not reached")
    args = ap.parse_args(argv)
    targets = ["native", "qemu-cm4"] if args.target == "both" else [args.target]
    out = args.out or Path(tempfile.mkdtemp(prefix="td-fuzz-"))
    s = fuzz(args.models, args.seed, targets, out, batch=args.batch, shrink_max=args.shrink,
             qemu_every=args.qemu_every if args.target == "both" else 1, jobs=args.jobs,
             tflm_every=args.tflm_every)
    shown = [*targets, *([TFLM_TARGET] if s.run.get(TFLM_TARGET) else [])]
    print()
    print(table(s, shown))
    print()
    total = s.seconds.get("total", 0.0)
    for t in shown:
        new = s.new_mismatches(t)
        known = Counter(m["known"] for m in s.mismatches[t] if m["known"])
        print(f"{t}: {s.run[t]} models run, {len(s.mismatches[t])} mismatches "
              f"({len(new)} new; known issues: "
              f"{', '.join(f'{k} {n}' for k, n in known.items()) or 'none'}), "
              f"{s.run[t] / max(total, 1e-9):.1f} models/s overall "
              f"(C build + run {s.seconds.get(t, 0.0):.0f} s)")
    print(f"generated {s.models}, discarded {sum(s.discarded.values())}: "
          + ", ".join(f"{k} {v}" for k, v in sorted(s.discarded.items())))
    for reason, n in s.reasons.most_common(12):
        print(f"  {n:5d}  {reason}")
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(s.seconds.items())))
    gaps = {t: missing(s, t) for t in targets}
    for t, gap in gaps.items():
        print(f"not covered on {t}: {', '.join(gap) if gap else 'nothing'}")
    for info in s.shrunk:
        print(f"minimal repro ({info['target']}, seed {info['seed']}, {info['note']}): "
              f"{info['model']}\n    {info['layers']}")
    print(f"output: {out}")
    if args.json:
        args.json.write_text(json.dumps({
            "models": s.models, "run": dict(s.run), "discarded": dict(s.discarded),
            "mismatches": dict(s.mismatches), "seconds": dict(s.seconds),
            "shrunk": s.shrunk, "missing": gaps,
            "rows": [[*k, *v] for k, v in sorted(s.rows.items())]}, indent=1) + "\n")
    failing = sum(len(s.new_mismatches(t)) for t in shown) if args.allow_known \
        else s.total_mismatches
    seen = {m["known"] for t in shown for m in s.mismatches[t]}
    for k in KNOWN:
        if k.id in seen:
            print(f"known issue {k.id} (tinydeploy/fuzz/known.py): {k.text}")
    bad = failing > 0 or (args.strict_coverage and any(gaps.values()))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
