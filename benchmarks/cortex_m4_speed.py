"""Speed and size of the C runtime on the emulated Cortex-M4 vs TFLM (reference models).

For every shared reference model (tests/data/ground_truth.json) the C runtime can run, this
builds the qemu-cm4 firmware (tinydeploy.device.qemu), runs the model's 16 reference inputs
over the device protocol and takes the mean of the RESULT cycles (QEMU -icount shift=0
instructions, SysTick ticks x 40 around td_invoke(), the same method as the ground truth's
``cm4_instr_*``). Printed next to TFLM with CMSIS-NN (``cm4_instr_cmsis_nn``) and with its
reference kernels (``cm4_instr_tflm_ref``) as ratios, plus the firmware's flash (text+data)
and RAM (bss) against the TFLM firmware's ``cm4_text`` / ``cm4_bss``. Every output is
compared with ``NAME.outputs_cm4.npy`` (bit-exact, else the model is marked MISMATCH).

Targets (issue 18): sum(instructions) <= 0.6x CMSIS-NN, no model above 1.0x CMSIS-NN,
every model at most TFLM reference (the DSP build; --portable is slower by design);
flash <= 0.25x TFLM's on every CNN, counted without the model's own constants; sum(bss)
no worse than before the speed work over the models measured then
(benchmarks/results/cortex_m4_speed_before.txt). Exit code 1 when a target is missed or an
output differs.

Flash is shown both whole (``x_text``) and without the model's constants (``x_code``):
``model`` is the read-only data of the compiled td_model.c (weights, biases,
requantization and layer parameters), and TFLM's side loses its flatbuffer (``cm4_text +
cm4_data`` minus the .tflite size). Int8 weights take the same bytes in any runtime, so a
whole-flash ratio of 0.25x is out of reach where they alone exceed it (person_detect's are
0.70x of TFLM's whole firmware); the line "constants alone" lists those floors.
Models with several inputs read ``NAME.inputs_K.npy`` and send them concatenated.

A second table gives the RAM that matters (issue 18): everything the runtime needs besides
the serial protocol (the firmware's .data/.bss symbols minus the protocol's and the board
harness's: arena with the planned inputs/outputs and scratch, state, any I/O buffers) next
to TFLM's ``arena_used_bytes_cm4`` plus its interpreter (the rest of ``cm4_bss`` beside the
arena), with the ratio and the memory techniques the plan used (memory.json's
``saved_bytes``). Reported, not enforced: target <= 0.5x TFLM on every CNN.

    python benchmarks/cortex_m4_speed.py [--models a,b] [--portable] [--json out.json]
        [--mcunet-vww vww.tflite]

``--mcunet-vww`` (or ``$TINYDEPLOY_MCUNET_VWW``): MIT's MCUNet VWW (TinyEngine's
``assets/vww.tflite``, float I/O, not committed) on the C runtime with the inputs of the
stored TFLM measurement ``results/mcunet_vww_tflm_cm4.json`` (``mcunet_vww_tflm.py``:
TFLM 90b983c2 with CMSIS-NN and with its reference kernels), bit-exact with the host;
target <= 0.55x TFLM+CMSIS-NN.

``--portable`` builds with -DTD_PORTABLE (the plain C kernels instead of the DSP-extension
ones; the numbers must be identical).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
SUM_TARGET = 0.6
MAX_TARGET = 1.0
FLASH_CNN_TARGET = 0.25
RAM_CNN_TARGET = 0.5  # issue 18: RAM besides the protocol vs TFLM's arena + interpreter
BEFORE = Path(__file__).resolve().parent / "results" / "cortex_m4_speed_before.txt"
CNN_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")
MCUNET_TARGET = 0.55
MCUNET_ENV = "TINYDEPLOY_MCUNET_VWW"


def measure(name: str, data: Path, work: Path, defines: tuple[str, ...] = (),
            patch: str = "auto") -> dict[str, Any] | None:
    """Build, run the 16 reference inputs; None when the C runtime refuses the model
    (``patch``: the C runtime's patch-based stage, ``auto``, ``off`` or ``F:L:B``)."""
    from tinydeploy.device.link import Link
    from tinydeploy.device.qemu import build_info, build_qemu, start_qemu

    path = data / f"{name}.tflite"
    files = [data / f"{name}.inputs.npy"]
    if not files[0].is_file():  # several inputs: NAME.inputs_K.npy, sent concatenated
        files = sorted(data.glob(f"{name}.inputs_*.npy"),
                       key=lambda f: int(f.stem.rsplit("_", 1)[1]))
    try:
        build_qemu(path, work, defines=defines, patch=patch)
    except TinyDeployError as exc:
        if exc.code in ("unsupported_op", "model_rejected"):
            return None
        raise
    info = build_info(work)
    xs = [np.load(f) for f in files]
    want = np.load(data / f"{name}.outputs_cm4.npy")
    cycles = []
    exact = True
    with start_qemu(path, work, defines=defines, patch=patch) as proc, \
            Link(proc.port, timeout=60.0) as link:
        link.hello()
        for i in range(len(xs[0])):
            reply = link.infer(b"".join(np.ascontiguousarray(x[i]).tobytes() for x in xs))
            got = np.frombuffer(bytes(reply.output), dtype=want.dtype)
            exact &= bool(np.array_equal(got, want[i].reshape(-1)))
            cycles.append(int(reply.cycles))
    return {"model": name, "instr": float(np.mean(cycles)), "exact": exact,
            "text": info["text"], "data": info["data"], "bss": info["bss"],
            "flash": info["text"] + info["data"], "consts": model_constants(work),
            "tflite": path.stat().st_size, "ram": runtime_ram(work),
            "techniques": memory_techniques(work)}


# RAM of the firmware that belongs to the serial protocol or the board harness, not to the
# runtime: td_protocol.c's device state and td_info, td_model_describe()'s tensor tables
# (protocol metadata), the SysTick wrap counter and the profiling marks
PROTOCOL_RAM = re.compile(r"^(info|device_storage|systick_wraps|inputs\.\d+|outputs\.\d+|"
                          r"profile_\w+)$")


def runtime_ram(work: Path) -> int:
    """Bytes of RAM (.data + .bss symbols of the firmware ELF) the runtime needs besides the
    serial protocol: the arena (plan, I/O, scratch), state tensors, any I/O buffers outside
    the plan and the kernels' static data. The stack is not counted (nor is TFLM's)."""
    import subprocess

    from tinydeploy.device.qemu import ELF

    out = subprocess.run(["arm-none-eabi-nm", "-S", str(work / ELF)], check=True,
                         capture_output=True, text=True).stdout
    total = 0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "bBdD" and not PROTOCOL_RAM.match(parts[3]):
            total += int(parts[1], 16)
    return total


def memory_techniques(work: Path) -> str:
    """The memory techniques the generated model's plan used (memory.json), e.g. "io+inplace"."""
    path = work / "model" / "memory.json"
    mem = json.loads(path.read_text()) if path.is_file() else {}
    used = [k for k, v in mem.get("saved_bytes", {}).items() if v > 0]
    if "patch" in mem:  # --patch auto (chosen by the planner) or first:last:bands
        p = mem["patch"]
        used.append("patch({},ops{}..{},{}bands,{:.2f}x_outputs,{:.1%}_extra_MACs)".format(
            p.get("chosen", "forced"), *p["ops"], p["bands"], p["recompute_macs_ratio"],
            p.get("extra_macs_ratio", 0.0)))  # one word: before_after.py splits on spaces, "+"
    return "+".join(used) or "-"


def tflm_ram(g: dict[str, Any]) -> int:
    """TFLM's RAM besides the protocol: arena_used_bytes() on the Cortex-M4 plus the
    interpreter (the rest of the firmware's .bss: interpreter, op resolver, harness)."""
    return int(g["arena_used_bytes_cm4"] + g["cm4_bss"] - g["cm4_arena_in_bss"])


def model_constants(work: Path) -> int:
    """Bytes of read-only data in the generated td_model.c (weights, biases, requantization
    and layer parameters), compiled as the firmware compiles it."""
    import subprocess

    obj = work / "td_model_consts.o"
    subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-Os", "-std=c99",
                    "-fdata-sections", "-c", str(work / "model" / "td_model.c"), "-o", str(obj)],
                   check=True)
    out = subprocess.run(["arm-none-eabi-size", "-A", str(obj)], check=True,
                         capture_output=True, text=True).stdout
    return sum(int(line.split()[1]) for line in out.splitlines()
               if line.startswith((".rodata", ".data")))


def before_bss(path: Path = BEFORE) -> dict[str, int]:
    """bss per model in the stored table measured before the speed work."""
    out = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 11 and parts[1].isdigit():
            out[parts[0]] = int(parts[8])
    return out


def table(rows: list[dict[str, Any]], gt: dict[str, Any]) -> tuple[str, bool]:
    """The printed table and whether every target holds."""
    lines = [f"{'model':22} {'instr':>11} {'cmsis_nn':>11} {'x_cmsis':>7} {'tflm_ref':>11} "
             f"{'x_ref':>6} {'flash':>7} {'x_text':>6} {'model':>7} {'x_code':>6} {'bss':>6} "
             f"{'x_bss':>6} exact"]
    ok = True
    for r in rows:
        g = gt[r["model"]]
        r["x_cmsis"] = r["instr"] / g["cm4_instr_cmsis_nn"]
        r["x_ref"] = r["instr"] / g["cm4_instr_tflm_ref"]
        r["x_text"] = r["flash"] / (g["cm4_text"] + g["cm4_data"])
        r["x_code"] = (r["flash"] - r["consts"]) / (g["cm4_text"] + g["cm4_data"] - r["tflite"])
        r["x_bss"] = r["bss"] / g["cm4_bss"]
        r["cnn"] = any(op in CNN_OPS for op in g.get("ops", []))
        lines.append(f"{r['model']:22} {r['instr']:11.0f} {g['cm4_instr_cmsis_nn']:11.0f} "
                     f"{r['x_cmsis']:7.2f} {g['cm4_instr_tflm_ref']:11.0f} {r['x_ref']:6.2f} "
                     f"{r['flash']:7d} {r['x_text']:6.3f} {r['consts']:7d} {r['x_code']:6.3f} "
                     f"{r['bss']:6d} {r['x_bss']:6.3f} "
                     f"{'yes' if r['exact'] else 'MISMATCH'}")
        ok &= r["exact"] and r["x_cmsis"] <= MAX_TARGET and r["x_ref"] <= 1.0
        # the model's own constants are the same bytes in any runtime: the target applies to
        # the rest (code and runtime data), see the module docstring
        ok &= not r["cnn"] or r["x_code"] <= FLASH_CNN_TARGET
    if not rows:
        return "no model measured", False
    s_instr = sum(r["instr"] for r in rows)
    s_cmsis = sum(gt[r["model"]]["cm4_instr_cmsis_nn"] for r in rows)
    s_ref = sum(gt[r["model"]]["cm4_instr_tflm_ref"] for r in rows)
    geo = math.exp(sum(math.log(r["x_cmsis"]) for r in rows) / len(rows))
    geo_ref = math.exp(sum(math.log(r["x_ref"]) for r in rows) / len(rows))
    s_bss = sum(r["bss"] for r in rows) / sum(gt[r["model"]]["cm4_bss"] for r in rows)
    old = before_bss()
    common = [r for r in rows if r["model"] in old]
    bss_now, bss_old = sum(r["bss"] for r in common), sum(old[r["model"]] for r in common)
    s_flash = sum(r["flash"] for r in rows) / sum(
        gt[r["model"]]["cm4_text"] + gt[r["model"]]["cm4_data"] for r in rows)
    worst = max(rows, key=lambda r: r["x_cmsis"])
    floors = sorted(((r["consts"] / (gt[r["model"]]["cm4_text"] + gt[r["model"]]["cm4_data"]),
                      r["model"]) for r in rows if r["cnn"]), reverse=True)
    floor = ", ".join(f"{m} {f:.2f}x" for f, m in floors if f >= 0.1)
    lines += [
        f"models: {len(rows)}",
        f"instructions: sum {s_instr / s_cmsis:.2f}x CMSIS-NN (target <= {SUM_TARGET}), "
        f"geomean {geo:.2f}x, worst {worst['model']} {worst['x_cmsis']:.2f}x "
        f"(target <= {MAX_TARGET}); vs TFLM reference: sum {s_instr / s_ref:.3f}x, "
        f"geomean {geo_ref:.3f}x, worst {max(r['x_ref'] for r in rows):.2f}x (target <= 1)",
        f"flash: sum {s_flash:.3f}x TFLM, worst CNN "
        f"{max((r['x_text'] for r in rows if r['cnn']), default=0):.3f}x "
        f"(the model's constants alone: {floor}); without them (x_code): worst CNN "
        f"{max((r['x_code'] for r in rows if r['cnn']), default=0):.3f}x (target <= "
        f"{FLASH_CNN_TARGET}), worst {max(r['x_code'] for r in rows):.3f}x",
        f"RAM (bss): sum {s_bss:.3f}x TFLM; on the "
        f"{len(common)} models measured before: {bss_now} B vs {bss_old} B before "
        f"(target: no more)",
    ]
    ok &= s_instr <= SUM_TARGET * s_cmsis and bss_now <= bss_old
    return "\n".join(lines + ram_lines(rows, gt)), ok


def ram_lines(rows: list[dict[str, Any]], gt: dict[str, Any]) -> list[str]:
    """RAM besides the protocol (runtime_ram) next to TFLM's (tflm_ram), per model, with
    the memory techniques the plan used; the issue's targets are reported, not enforced."""
    lines = ["", f"{'model':22} {'ram':>7} {'tflm_ram':>8} {'x_tflm':>6} techniques"]
    for r in rows:
        r["tflm_ram"] = tflm_ram(gt[r["model"]])
        r["x_ram"] = r["ram"] / r["tflm_ram"]
        lines.append(f"{r['model']:22} {r['ram']:7d} {r['tflm_ram']:8d} {r['x_ram']:6.3f} "
                     f"{r.get('techniques', '-')}")
    cnn = [r for r in rows if r["cnn"]]
    worst = max(cnn, key=lambda r: r["x_ram"], default=None)
    s_ram = sum(r["ram"] for r in rows) / sum(r["tflm_ram"] for r in rows)
    lines.append(f"RAM besides the protocol (arena incl. I/O + scratch + state + buffers; "
                 f"TFLM: arena_used_bytes_cm4 + interpreter): sum {s_ram:.3f}x TFLM"
                 + (f", worst CNN {worst['model']} {worst['x_ram']:.3f}x (target <= "
                    f"{RAM_CNN_TARGET})" if worst else ""))
    return lines


def mcunet_vww(path: Path, work: Path, patch: str = "auto"
               ) -> tuple[str, dict[str, Any], bool]:
    """MCUNet VWW on the C runtime (qemu-cm4, validated against the host) next to the
    stored TFLM measurement: the printed line, the row, whether the target holds."""
    from mcunet_vww_tflm import RESULT, vww_inputs

    from tinydeploy.validation import validate

    stored = json.loads(RESULT.read_text())
    facts = load(path)
    if facts.sha256 != stored["model"]["sha256"]:
        return f"mcunet_vww: {path} is not the model measured in {RESULT.name}", {}, False
    np.savez(work / "vww.npz", x_test=vww_inputs(facts, stored["inputs"]["count"]))
    res = validate(path, work / "vww.npz", work / "vww", board="qemu-cm4", patch=patch)
    tflm = stored["flavours"]
    row = {"model": "mcunet_vww", "instr": res.metrics["instructions"]["mean"],
           "exact": res.passed and res.metrics["exact_match_rate"] == 1.0,
           "bss": res.report["memory"]["elf"]["bss"],
           "x_cmsis": res.metrics["instructions"]["mean"] / tflm["cmsis-nn"]["instructions_mean"],
           "x_ref": res.metrics["instructions"]["mean"] / tflm["reference"]["instructions_mean"]}
    line = (f"mcunet_vww: {row['instr']:.0f} instructions = {row['x_cmsis']:.2f}x TFLM+CMSIS-NN "
            f"({tflm['cmsis-nn']['instructions_mean']:.0f}; target <= {MCUNET_TARGET}), "
            f"{row['x_ref']:.3f}x TFLM reference; bss {row['bss']} B (TFLM arena_used "
            f"{tflm['cmsis-nn']['arena_used']} B); {'exact' if row['exact'] else 'MISMATCH'} "
            f"over {stored['inputs']['count']} inputs")
    return line, row, row["exact"] and row["x_cmsis"] <= MCUNET_TARGET


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--models", default="", help="comma-separated subset (default: all)")
    ap.add_argument("--portable", action="store_true", help="build with -DTD_PORTABLE")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    ap.add_argument("--mcunet-vww", type=Path, default=os.environ.get(MCUNET_ENV) or None,
                    help=f"TinyEngine's assets/vww.tflite (default ${MCUNET_ENV})")
    ap.add_argument("--patch", default="auto",
                    help="the C runtime's patch-based stage: auto (default) | off | F:L:B")
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
            row = measure(name, args.data, Path(tmp) / name, defines, args.patch)
            if row is None:
                skipped.append(name)
                continue
            rows.append(row)
            print(f"  {name}: {row['instr']:.0f} instructions", file=sys.stderr, flush=True)
        text, ok = table(rows, gt)
        extra: dict[str, Any] = {}
        if args.mcunet_vww:
            line, extra, ok_vww = mcunet_vww(args.mcunet_vww, Path(tmp), args.patch)
            text, ok = f"{text}\n{line}", ok and ok_vww
    print(text)
    if skipped:
        print("not run by the C runtime: " + ", ".join(skipped))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "skipped": skipped, "mcunet_vww": extra,
                                         "portable": args.portable}, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
