"""Static C-runtime arena vs TFLM's measured minimum arena on Cortex-M4 (reference models).

Prints, per reference model, the offline memory plan of the interpreter-free C runtime
(``tinydeploy.cruntime``), its liveness lower bound, the weights it carries and the
``min_arena_cm4`` measured with TFLM (tests/data/ground_truth.json), then the overall ratio
sum(plan) / sum(min_arena_cm4). Target: <= 0.5.

With the Arm toolchain installed (arm-none-eabi-gcc, see tinydeploy/qemu.py) it also builds
each model's bare-metal Cortex-M4 firmware for the qemu-cm4 board (C runtime + protocol
core, -Os, newlib-nano, --gc-sections) and prints its arm-none-eabi-size .text/.bss next to
the TFLM firmware's measured ``cm4_text``/``cm4_bss`` (ratios; informational, no target).

    python benchmarks/memory.py [--data tests/data] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from tinydeploy.cruntime import generate_c
from tinydeploy.facts import load

TARGET = 0.5


def _firmware_sizes(rows: list[dict], gt: dict, data: Path, tmp: Path) -> None:
    """Add the C-runtime Cortex-M4 firmware's text/bss (qemu-cm4 build) vs TFLM's to rows."""
    from tinydeploy.device.qemu import build_info, build_qemu

    print(f"\n{'model':18} {'c_text':>7} {'tflm_text':>9} {'ratio':>6} {'c_bss':>7} "
          f"{'tflm_bss':>8} {'ratio':>6}")
    for row in rows:
        name = row["model"]
        build_qemu(data / f"{name}.tflite", tmp / f"{name}-cm4")
        fw = build_info(tmp / f"{name}-cm4")
        ref = gt[name]
        row.update(c_cm4_text=fw["text"], c_cm4_data=fw["data"], c_cm4_bss=fw["bss"],
                   tflm_cm4_text=ref["cm4_text"], tflm_cm4_bss=ref["cm4_bss"],
                   text_ratio=fw["text"] / ref["cm4_text"], bss_ratio=fw["bss"] / ref["cm4_bss"])
        print(f"{name:18} {fw['text']:7d} {ref['cm4_text']:9d} {row['text_ratio']:6.3f} "
              f"{fw['bss']:7d} {ref['cm4_bss']:8d} {row['bss_ratio']:6.3f}")
    for key, ref in (("text", "cm4_text"), ("bss", "cm4_bss")):
        ratio = sum(r[f"c_cm4_{key}"] for r in rows) / sum(gt[r["model"]][ref] for r in rows)
        print(f"firmware {key}: sum(C runtime)/sum(TFLM {ref}) = {ratio:.3f}")


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
        if all(shutil.which(t) for t in ("arm-none-eabi-gcc", "arm-none-eabi-size")):
            _firmware_sizes(rows, gt, args.data, Path(tmp))
        else:
            print("arm-none-eabi-gcc not found: no firmware size column "
                  "(apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)")
    total = sum(r["plan"] for r in rows) / sum(r["min_arena_cm4"] for r in rows)
    print(f"overall ratio sum(plan)/sum(min_arena_cm4) = {total:.3f} (target <= {TARGET})")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "overall_ratio": total}, indent=2))
    return 0 if total <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
