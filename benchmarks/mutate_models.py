"""Byte-mutated models through check and ``generate --runtime c``, accepted ones compiled
with ASan/UBSan and run (``tinydeploy.cruntime.mutation``), at scale.

Seeds: the ``.tflite`` files under tests/data (and every ``--seeds`` folder) up to
``--max-seed-bytes``. Each mutant has 1-4 bytes flipped or overwritten. Anything but a clean
``TinyDeployError`` or C that runs clean under the sanitizers is a bug: it is saved to
``--save`` (a ``.tflite`` per bug) and the script exits 1.

    python benchmarks/mutate_models.py --models 5000 --seed 1 \
        [--seeds ../shared/regressions] [--max-seed-bytes 20000] [--no-compile] \
        [--save DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections import Counter
from pathlib import Path

from tinydeploy.cruntime.mutation import Campaign, run_campaign, seed_models

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=5000, help="mutants to try")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seeds", type=Path, action="append", default=[],
                    help="more folders of seed .tflite models")
    ap.add_argument("--max-seed-bytes", type=int, default=20_000)
    ap.add_argument("--no-compile", action="store_true",
                    help="only the generator (no sanitizer builds)")
    ap.add_argument("--jobs", type=int, default=2, help="compile-and-run jobs at a time")
    ap.add_argument("--save", type=Path, default=Path("mutation-bugs"),
                    help="folder for the mutants that found bugs")
    ap.add_argument("--json", type=Path, help="write the counts as JSON")
    args = ap.parse_args(argv)
    logging.getLogger("tinydeploy").setLevel(logging.WARNING)

    models = seed_models([DATA, *args.seeds], args.max_seed_bytes)
    print(f"{len(models)} seed models, {args.models} mutants, seed {args.seed}")

    def progress(k: int, camp: Campaign) -> None:
        if (k + 1) % 500 == 0:
            print(f"  {k + 1}: {camp.generated} generated, {camp.compiled} compiled, "
                  f"{len(camp.bugs)} bugs", flush=True)

    with tempfile.TemporaryDirectory(prefix="td-mutate-bench-") as tmp:
        camp = run_campaign(models, args.models, args.seed, work=Path(tmp),
                            compile_c=not args.no_compile, progress=progress,
                            jobs=args.jobs)
    print(camp.summary())
    by_seed = Counter(b.source for b in camp.bugs)
    for bug in camp.bugs:
        path = bug.save(args.save)
        print(f"BUG {bug.stage} (mutant {bug.index} of {bug.source}): {bug.detail[:300]} "
              f"-> {path}")
    if args.json:
        args.json.write_text(json.dumps({
            "mutants": camp.mutants, "seed": args.seed, "seed_models": len(models),
            "unreadable": camp.load_refused, "check_accepted": camp.check_accepted,
            "refused": dict(camp.refused), "generated": camp.generated,
            "check_refused_generated": camp.check_refused_generated,
            "compiled": camp.compiled, "runs": camp.runs, "too_large": camp.too_large,
            "bugs": len(camp.bugs), "bugs_by_seed": dict(by_seed),
            "seconds": round(camp.seconds, 1)}, indent=2) + "\n")
    return 1 if camp.bugs else 0


if __name__ == "__main__":
    sys.exit(main())
