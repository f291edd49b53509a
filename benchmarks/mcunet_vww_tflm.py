"""TFLite Micro on MCUNet VWW (emulated Cortex-M4): CMSIS-NN and reference kernels, measured.

MIT's MCUNet VWW model (github.com/mit-han-lab/tinyengine, ``assets/vww.tflite``: 80x80x3
float input, an int8 core between QUANTIZE and DEQUANTIZE, not committed here: not ours)
is validated on ``qemu-cm4`` with the TFLM firmware ``generate`` renders, built against a
tflite-micro checkout in both kernel flavours (``tinydeploy.device.tflm_tree``: ``cmsis-nn`` =
``OPTIMIZED_KERNEL_DIR=cmsis_nn`` with the CMSIS-NN of the tree's downloads, ``reference``).
Per flavour it stores the mean emulated instructions per ``Invoke()`` over the inputs (QEMU
``-icount shift=0``, SysTick on the 25 MHz clock around ``Invoke()``, ticks x 40: the
counter of the shared ground truth's ``cm4_instr_*``), ``arena_used_bytes()`` from the
firmware's HELLO, the ELF's .text/.data/.bss and whether every output is bit-exact with the
host TFLM. The inputs: :func:`vww_inputs` (float32, uniform over the range the input
QUANTIZE covers, ``default_rng(2026)``). The build is the shared ground truth's: the same
``cmsis-nn`` flavour reproduces person_detect's ``cm4_instr_cmsis_nn`` (22,575,102.5 vs
22,575,105, resolution 40), its outputs and ``arena_used_bytes_cm4_cmsis_nn`` (82,308 B)
(``benchmarks/tflm_firmware.py --model person_detect --board qemu-cm4``).
``benchmarks/cortex_m4_speed.py --mcunet-vww`` compares the C runtime with the stored file.

    python benchmarks/mcunet_vww_tflm.py --model vww.tflite --tree TFLITE_MICRO
        [--samples 8] [--tflm-commit SHA] [--min-arena]
        [--out benchmarks/results/mcunet_vww_tflm_cm4.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tinydeploy.device.qemu import QEMU
from tinydeploy.device.tflm_build import toolchain
from tinydeploy.device.tflm_tree import _DOWNLOADS, ENV_FLAVOUR, FLAVOURS, find_tflm_tree
from tinydeploy.facts import ModelFacts, load
from tinydeploy.interface import float_boundaries
from tinydeploy.validation import validate

RESULT = Path(__file__).resolve().parent / "results" / "mcunet_vww_tflm_cm4.json"
SEED = 2026
SAMPLES = 8
BOARD = "qemu-cm4"
SOURCE = {"repo": "https://github.com/mit-han-lab/tinyengine", "path": "assets/vww.tflite",
          "license": "MIT"}
HOW = ("tinydeploy validate --board qemu-cm4 --runtime tflm (the firmware `generate` renders: "
       "MicroMutableOpResolver of the model's ops, 16-byte aligned arena, serial protocol); "
       "QEMU mps2-an386 Cortex-M4 without FPU, -icount shift=0; instructions = SysTick ticks "
       "x 40 around Invoke(), mean over the inputs; TFLM core -Os, kernels and CMSIS-NN -O2, "
       "-mcpu=cortex-m4 -mthumb -mfloat-abi=soft, newlib-nano, --gc-sections; arena_used = "
       "MicroInterpreter::arena_used_bytes() after AllocateTensors (HELLO); min_arena = the "
       "smallest arena for AllocateTensors + Invoke (tinydeploy arena --target qemu-cm4: byte "
       "bisection, a fresh boot per trial, min-1 fails, min+1..16 work); text/data/bss of "
       "the whole firmware ELF (model array and tinydeploy's protocol included; "
       "code_without_model = text + data - model bytes)")


def vww_inputs(facts: ModelFacts, n: int = SAMPLES, seed: int = SEED) -> np.ndarray:
    """``n`` float32 inputs, uniform over the float range the model's input QUANTIZE maps
    onto int8 (for a model with a quantized input: its dequantized range)."""
    inner = next((b.inner for b in float_boundaries(facts) if b.role == "input"),
                 facts.inputs[0])
    scale, zp = float(inner.scale or 1.0), int(inner.zero_point or 0)
    lo, hi = scale * (-128 - zp), scale * (127 - zp)
    shape = (n, *facts.inputs[0].shape[1:])
    return np.random.default_rng(seed).uniform(lo, hi, size=shape).astype(np.float32)


def cmsis_nn_commit(root: Path) -> str | None:
    """The CMSIS-NN commit the tree's download script pins (``ZIP_PREFIX_NN``)."""
    script = root / _DOWNLOADS.rsplit("/", 1)[0] / "ext_libs" / "cmsis_nn_download.sh"
    found = re.search(r'ZIP_PREFIX_NN="([0-9a-f]{40})"', script.read_text()) \
        if script.is_file() else None
    return found.group(1) if found else None


def _first_line(cmd: list[str]) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0].strip() if out else ""


def min_arena(model: Path, tree: Any) -> int:
    """The smallest arena AllocateTensors and Invoke accept on qemu-cm4 with ``tree``'s
    flavour (:func:`tinydeploy.arena_measure.measure_arena`: byte bisection, fresh boot per
    trial, min-1 fails and min+1..16 work; cached per model and tree)."""
    from tinydeploy.arena_measure import measure_arena

    saved = os.environ.get(ENV_FLAVOUR)
    os.environ[ENV_FLAVOUR] = tree.flavour  # measure_arena finds the tree by its path
    try:
        return measure_arena(model, tree.root).arena_bytes
    finally:
        if saved is None:
            os.environ.pop(ENV_FLAVOUR, None)
        else:
            os.environ[ENV_FLAVOUR] = saved


def measure(model: Path, data: Path, tree: Any, out: Path, arena_min: bool = False,
            ) -> dict[str, Any]:
    """One flavour: validate on qemu-cm4 and collect the numbers (``arena_min``: also the
    measured minimum arena, minutes per flavour)."""
    start = time.monotonic()
    res = validate(model, data, out, board=BOARD, runtime="tflm", tflm_src=tree)
    stats = res.metrics["instructions"]
    elf = res.report["memory"]["elf"]
    extra = {"min_arena": min_arena(model, tree)} if arena_min else {}
    return {
        "tree": tree.name, "flavour": tree.flavour, "tree_content_hash": tree.content_hash,
        "passed": res.passed, "exact_match_rate": res.metrics["exact_match_rate"],
        "samples": stats["count"], "instructions_mean": round(float(stats["mean"]), 1),
        "instructions_min_max": [int(stats["min"]), int(stats["max"])],
        "arena_size": res.device.get("arena_size"), "arena_used": res.device.get("arena_used"),
        "text": elf["text"], "data": elf["data"], "bss": elf["bss"],
        "code_without_model": elf["text"] + elf["data"] - model.stat().st_size,
        **extra, "seconds": round(time.monotonic() - start, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="TinyEngine's assets/vww.tflite")
    ap.add_argument("--tree", type=Path, required=True, help="tflite-micro checkout + downloads")
    ap.add_argument("--samples", type=int, default=SAMPLES)
    ap.add_argument("--tflm-commit", default=None, help="the checkout's commit, for the record")
    ap.add_argument("--model-commit", default=None, help="TinyEngine's commit, for the record")
    ap.add_argument("--flavour", action="append", choices=FLAVOURS)
    ap.add_argument("--min-arena", action="store_true",
                    help="also measure the smallest arena per flavour (minutes each)")
    ap.add_argument("--out", type=Path, default=RESULT)
    args = ap.parse_args(argv)
    facts = load(args.model)
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="td-mcunet-") as tmp:
        data = Path(tmp) / "vww.npz"
        np.savez(data, x_test=vww_inputs(facts, args.samples))
        for flavour in args.flavour or [FLAVOURS[1], FLAVOURS[0]]:
            tree = find_tflm_tree(args.tree, flavour=flavour, board=BOARD)
            rows[flavour] = measure(args.model, data, tree, Path(tmp) / flavour,
                                    args.min_arena)
            print(json.dumps(rows[flavour]), flush=True)
    result: dict[str, Any] = {
        "model": {"name": "mcunet-vww", "file": args.model.name, "bytes": facts.size_bytes,
                  "sha256": facts.sha256,
                  "source": {**SOURCE, "commit": args.model_commit}},
        "inputs": {"count": args.samples, "seed": SEED,
                   "how": "float32 uniform over the input QUANTIZE's range "
                          "(benchmarks/mcunet_vww_tflm.py vww_inputs)"},
        "board": BOARD, "how": HOW,
        "tflm": {"commit": args.tflm_commit, "cmsis_nn_commit": cmsis_nn_commit(args.tree)},
        "compiler": toolchain(BOARD).version(), "qemu": _first_line([QEMU, "--version"]),
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "flavours": rows,
    }
    if len(rows) == 2:  # both bit-exact with the host: equal to each other
        ref, cmsis = rows[FLAVOURS[0]], rows[FLAVOURS[1]]
        result["cmsis_nn_speedup"] = round(ref["instructions_mean"]
                                           / cmsis["instructions_mean"], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(r["passed"] and r["exact_match_rate"] == 1.0 for r in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
