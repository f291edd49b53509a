"""Speed and size of the C runtime on the emulated Cortex-M4 vs TFLM (reference models).

For every shared reference model (tests/data/ground_truth.json) the C runtime can run, this
builds the qemu-cm4 firmware (tinydeploy.device.qemu), runs the model's 16 reference inputs
over the device protocol and takes the mean of the RESULT cycles (QEMU -icount shift=0
instructions, SysTick ticks x 40 around td_invoke(), the same method as the ground truth's
``cm4_instr_*``). Printed next to TFLM with CMSIS-NN (``cm4_instr_cmsis_nn``) and with its
reference kernels (``cm4_instr_tflm_ref``) as ratios, plus the firmware's flash (text+data)
and RAM (bss) against the TFLM firmware's ``cm4_text`` / ``cm4_bss``. Every output is
compared with ``NAME.outputs_cm4.npy`` (bit-exact, else the model is marked MISMATCH).

Targets: sum(instructions) <= 1.0x CMSIS-NN, no model above 1.5x CMSIS-NN, every model at
most TFLM reference; flash <= 0.25x TFLM's on every CNN; sum(bss) no worse than before
(0.592x TFLM, benchmarks/results/cortex_m4_speed_before.txt). Exit code 1 when a target is
missed or an output differs.

    python benchmarks/cortex_m4_speed.py [--models a,b] [--portable] [--json out.json]

``--portable`` builds with -DTD_PORTABLE (the plain C kernels instead of the DSP-extension
ones; the numbers must be identical).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
SUM_TARGET = 1.0
MAX_TARGET = 1.5
FLASH_CNN_TARGET = 0.25
RAM_BEFORE = 0.592  # sum(bss) ratio measured before the speed work (results/)
CNN_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")


def measure(name: str, data: Path, work: Path, defines: tuple[str, ...] = ()
            ) -> dict[str, Any] | None:
    """Build, run the 16 reference inputs; None when the C runtime refuses the model."""
    from tinydeploy.device.link import Link
    from tinydeploy.device.qemu import build_info, build_qemu, start_qemu

    path = data / f"{name}.tflite"
    inputs = data / f"{name}.inputs.npy"
    if not inputs.is_file():
        return None  # several inputs: not yet in this benchmark
    try:
        build_qemu(path, work, defines=defines)
    except TinyDeployError as exc:
        if exc.code in ("unsupported_op", "model_rejected"):
            return None
        raise
    info = build_info(work)
    x = np.load(inputs)
    want = np.load(data / f"{name}.outputs_cm4.npy")
    cycles = []
    exact = True
    with start_qemu(path, work, defines=defines) as proc, Link(proc.port, timeout=60.0) as link:
        link.hello()
        for i in range(len(x)):
            reply = link.infer(np.ascontiguousarray(x[i]).tobytes())
            got = np.frombuffer(bytes(reply.output), dtype=want.dtype)
            exact &= bool(np.array_equal(got, want[i].reshape(-1)))
            cycles.append(int(reply.cycles))
    return {"model": name, "instr": float(np.mean(cycles)), "exact": exact,
            "text": info["text"], "data": info["data"], "bss": info["bss"],
            "flash": info["text"] + info["data"]}


def table(rows: list[dict[str, Any]], gt: dict[str, Any]) -> tuple[str, bool]:
    """The printed table and whether every target holds."""
    lines = [f"{'model':22} {'instr':>11} {'cmsis_nn':>11} {'x_cmsis':>7} {'tflm_ref':>11} "
             f"{'x_ref':>6} {'flash':>7} {'x_text':>6} {'bss':>6} {'x_bss':>6} exact"]
    ok = True
    for r in rows:
        g = gt[r["model"]]
        r["x_cmsis"] = r["instr"] / g["cm4_instr_cmsis_nn"]
        r["x_ref"] = r["instr"] / g["cm4_instr_tflm_ref"]
        r["x_text"] = r["flash"] / (g["cm4_text"] + g["cm4_data"])
        r["x_bss"] = r["bss"] / g["cm4_bss"]
        r["cnn"] = any(op in CNN_OPS for op in g.get("ops", []))
        lines.append(f"{r['model']:22} {r['instr']:11.0f} {g['cm4_instr_cmsis_nn']:11.0f} "
                     f"{r['x_cmsis']:7.2f} {g['cm4_instr_tflm_ref']:11.0f} {r['x_ref']:6.2f} "
                     f"{r['flash']:7d} {r['x_text']:6.3f} {r['bss']:6d} {r['x_bss']:6.3f} "
                     f"{'yes' if r['exact'] else 'MISMATCH'}")
        ok &= r["exact"] and r["x_cmsis"] <= MAX_TARGET and r["x_ref"] <= 1.0
        ok &= not r["cnn"] or r["x_text"] <= FLASH_CNN_TARGET
    if not rows:
        return "no model measured", False
    s_instr = sum(r["instr"] for r in rows)
    s_cmsis = sum(gt[r["model"]]["cm4_instr_cmsis_nn"] for r in rows)
    s_ref = sum(gt[r["model"]]["cm4_instr_tflm_ref"] for r in rows)
    geo = math.exp(sum(math.log(r["x_cmsis"]) for r in rows) / len(rows))
    geo_ref = math.exp(sum(math.log(r["x_ref"]) for r in rows) / len(rows))
    s_bss = sum(r["bss"] for r in rows) / sum(gt[r["model"]]["cm4_bss"] for r in rows)
    s_flash = sum(r["flash"] for r in rows) / sum(
        gt[r["model"]]["cm4_text"] + gt[r["model"]]["cm4_data"] for r in rows)
    worst = max(rows, key=lambda r: r["x_cmsis"])
    lines += [
        f"models: {len(rows)}",
        f"instructions: sum {s_instr / s_cmsis:.2f}x CMSIS-NN (target <= {SUM_TARGET}), "
        f"geomean {geo:.2f}x, worst {worst['model']} {worst['x_cmsis']:.2f}x "
        f"(target <= {MAX_TARGET}); vs TFLM reference: sum {s_instr / s_ref:.3f}x, "
        f"geomean {geo_ref:.3f}x, worst {max(r['x_ref'] for r in rows):.2f}x (target <= 1)",
        f"flash: sum {s_flash:.3f}x TFLM, worst CNN "
        f"{max((r['x_text'] for r in rows if r['cnn']), default=0):.3f}x "
        f"(target <= {FLASH_CNN_TARGET}); RAM (bss): sum {s_bss:.3f}x TFLM "
        f"(before: {RAM_BEFORE})",
    ]
    ok &= s_instr <= SUM_TARGET * s_cmsis and s_bss <= RAM_BEFORE + 0.005
    return "\n".join(lines), ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--models", default="", help="comma-separated subset (default: all)")
    ap.add_argument("--portable", action="store_true", help="build with -DTD_PORTABLE")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = ap.parse_args(argv)
    for tool in ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm"):
        if shutil.which(tool) is None:
            print(f"{tool} not found (apt-get install gcc-arm-none-eabi "
                  "libnewlib-arm-none-eabi qemu-system-arm)")
            return 2
    gt = json.loads((args.data / "ground_truth.json").read_text())
    names = [n for n in args.models.split(",") if n] or sorted(gt)
    defines = ("-DTD_PORTABLE",) if args.portable else ()
    rows, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            load(args.data / f"{name}.tflite")
            row = measure(name, args.data, Path(tmp) / name, defines)
            if row is None:
                skipped.append(name)
                continue
            rows.append(row)
            print(f"  {name}: {row['instr']:.0f} instructions", file=sys.stderr, flush=True)
    text, ok = table(rows, gt)
    print(text)
    if skipped:
        print("not run by the C runtime: " + ", ".join(skipped))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "skipped": skipped,
                                         "portable": args.portable}, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
