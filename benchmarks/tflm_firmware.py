"""The generated TFLite Micro firmware on the boards without hardware, against the ground truth.

For each TFLM tree given (an Arduino TFLM library such as Chirale_TensorFLowLite, or a
tflite-micro checkout with its downloads; default ``$TINYDEPLOY_TFLM_SRC``), each board
(``qemu-cm4``, ``native``) and each reference model, runs ``tinydeploy deploy MODEL --board
B --runtime tflm --tflm-src TREE`` (the firmware ``generate`` renders for a real board,
built with the tree and validated against the host TFLM runtime on the model's 16
reference inputs) and prints one row: exact-match rate, outputs equal to the measured
Cortex-M4 outputs, TFLM library build time (cold = compiled now, cached = from the cache),
and on qemu-cm4 the firmware's .text/.bss and emulated instructions per inference next to
``cm4_text``/``cm4_bss`` (.bss without the tensor arena on both sides, the arenas differ)
and ``cm4_instr_tflm_ref`` (reference kernels) or ``cm4_instr_cmsis_nn`` (CMSIS-NN) of
tests/data/ground_truth.json. No target: the numbers are for the report.

    python benchmarks/tflm_firmware.py [--tree DIR ...] [--board qemu-cm4 --board native]
        [--model sine_mlp ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tinydeploy.data import Dataset
from tinydeploy.device.tflm_build import ENV_SRC, find_tflm_tree
from tinydeploy.facts import load
from tinydeploy.hostref import dequantize
from tinydeploy.pipeline import deploy

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
MODELS = ("sine_mlp", "digits_cnn", "micro_speech_quantized", "person_detect")


def reference_npz(name: str, path: Path) -> Path:
    """x_test = the model's 16 int8 reference inputs, dequantized (they quantize back)."""
    facts = load(DATA / f"{name}.tflite")
    x = dequantize(np.load(DATA / f"{name}.inputs.npy"), facts.inputs[0])
    y = np.zeros(len(x), np.float32)
    return Dataset(x_train=x, y_train=y, x_val=x, y_val=y, x_test=x, y_test=y).save(path)


def run_one(name: str, board: str, tree: Any, work: Path, gt: dict[str, Any]) -> dict[str, Any]:
    data = reference_npz(name, work / f"{name}.npz")
    res = deploy(str(DATA / f"{name}.tflite"), work / f"{name}-{board}", board=board,
                 data=data, runtime="tflm", tflm_src=tree)
    v = res.validation
    fw = res.device_build.get("tflm", {})
    cm4 = np.load(DATA / f"{name}.outputs_cm4.npy")
    row: dict[str, Any] = {
        "model": name, "tree": tree.name, "flavour": tree.flavour, "board": board,
        "passed": v.passed, "exact_match_rate": v.metrics["exact_match_rate"],
        "equals_cm4_ground_truth": v.device_out.tobytes() == cm4.tobytes(),
        "arena_size": v.device.get("arena_size"), "arena_used": v.device.get("arena_used"),
        "library_seconds": fw.get("library_seconds"),
        "firmware_seconds": fw.get("firmware_seconds"),
    }
    if board == "qemu-cm4":
        instr_key = "cm4_instr_cmsis_nn" if tree.flavour == "cmsis-nn" else "cm4_instr_tflm_ref"
        arena = int(fw.get("arena_bytes", 0))
        row.update({
            "text": fw.get("text"), "gt_text": gt["cm4_text"],
            "bss_without_arena": int(fw.get("bss", 0)) - arena,
            "gt_bss_without_arena": gt["cm4_bss"] - gt["cm4_arena_in_bss"],
            "instr_mean": v.metrics["instructions"]["mean"]
            if "instructions" in v.metrics else None,
            "gt_instr": gt.get(instr_key), "gt_instr_key": instr_key,
        })
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", action="append", help=f"TFLM tree (default ${ENV_SRC})")
    ap.add_argument("--board", action="append", choices=("qemu-cm4", "native"))
    ap.add_argument("--model", action="append", choices=MODELS)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    trees = args.tree or ([os.environ[ENV_SRC]] if os.environ.get(ENV_SRC) else [])
    if not trees:
        print(f"no TFLM tree: pass --tree DIR or set {ENV_SRC}", file=sys.stderr)
        return 2
    gt_all = json.loads((DATA / "ground_truth.json").read_text())
    rows = []
    with tempfile.TemporaryDirectory(prefix="td-tflm-bench-") as tmp:
        for path in trees:
            for board in args.board or ["qemu-cm4", "native"]:
                tree = find_tflm_tree(path, board=board)  # TINYDEPLOY_TFLM_FLAVOUR=auto
                for name in args.model or MODELS:
                    row = run_one(name, board, tree, Path(tmp), gt_all[name])
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["passed"] and r["equals_cm4_ground_truth"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
