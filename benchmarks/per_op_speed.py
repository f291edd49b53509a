"""Per-operator instructions on the emulated Cortex-M4: the C runtime vs TFLM + CMSIS-NN.

For every shared reference model (tests/data/ground_truth.json; ``--mcunet-vww`` adds MIT's
MCUNet VWW) both runtimes run the same inputs on qemu-cm4 (QEMU mps2-an386, ``-icount
shift=0``) and every operator is timed with the same SysTick counter (1 tick = 40
instructions, so each figure is +-40):

- the C runtime: its profiling build (``validate --profile``, ``tinydeploy.profile``: a
  mark before each operator of ``td_invoke()``);
- TFLM: our bare-metal image ``benchmarks/tflm_op_profiler.cpp`` built against a
  tflite-micro tree in the ``cmsis-nn`` flavour (``tinydeploy.device.tflm_tree``, the
  build of the shared ground truth's ``cm4_instr_cmsis_nn``) with a
  ``tflite::MicroProfilerInterface`` passed to the ``MicroInterpreter``: TFLM opens one
  event around each operator's Invoke. Its outputs are checked against the stored
  Cortex-M4 outputs (FNV-1a of the output bytes), its whole ``Invoke()`` printed next to
  the ground truth's.

Printed per model and operator: index, op, dtype (``i8``, ``16x8``, ``f32->i8``...), shape
(first input -> output), our instructions, TFLM+CMSIS-NN's and the ratio, ``<<`` marking
an operator above ``--flag`` (1.0) with at least ``--min-instr`` (2,000) of ours; then per
(op, dtype): the worst ratio (among operators of at least ``--min-instr``) and the totals.
No target: it finds the slow kernels (issue 18).

    python benchmarks/per_op_speed.py [--tree TFLITE_MICRO] [--models a,b]
        [--mcunet-vww /tmp/vww.tflite] [--samples 4] [--out results/per_op_speed_s17.txt]

Without a tflite-micro tree (``--tree`` or ``$TINYDEPLOY_TFLM_SRC``) it exits with code 2
and says so; nothing of the tree is copied here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data"
RESULT = HERE / "results" / "per_op_speed_s17.txt"
PROFILER_SRC = HERE / "tflm_op_profiler.cpp"
TICK = 40  # instructions per SysTick tick (tinydeploy.profile.TICK_INSTRUCTIONS)
ARENA = 1 << 20  # TFLM's arena in the profiling image (speed does not depend on it)
QEMU_TIMEOUT = 600.0
_SHORT = {"INT8": "i8", "INT16": "i16", "INT32": "i32", "FLOAT32": "f32", "UINT8": "u8",
          "INT64": "i64", "BOOL": "bool"}


@dataclass
class TflmRun:
    """What the profiling image printed: event tags, ticks [samples, events], whole
    ``Invoke()`` ticks and output hashes per sample."""

    tags: list[str]
    ticks: np.ndarray
    totals: list[int]
    hashes: list[int]


def parse_tflm_output(text: str) -> TflmRun:
    """Parse the UART text of ``tflm_op_profiler.cpp`` (see its header). Raises
    ``ValueError`` naming the problem on an ERROR line, a missing DONE or ragged lines."""
    tags: list[str] = []
    rows: list[list[int]] = []
    totals: list[int] = []
    hashes: list[int] = []
    done = False
    for line in text.splitlines():
        kind, _, rest = line.strip().partition(" ")
        if kind == "ERROR":
            raise ValueError(f"TFLM profiling image: {rest}")
        if kind == "N" and not tags:
            tags = rest.split()
        elif kind == "P":
            rows.append([int(p) for p in rest.split()])
        elif kind == "T":
            totals.append(int(rest))
        elif kind == "O":
            hashes.append(int(rest))
        elif kind == "DONE":
            done = True
    if not done:
        raise ValueError("TFLM profiling image: no DONE line (crashed or timed out)")
    if not rows or any(len(r) != len(tags) for r in rows) or len(totals) != len(rows):
        raise ValueError(f"TFLM profiling image: {len(tags)} tags but event rows of "
                         f"{sorted({len(r) for r in rows})} and {len(totals)} totals")
    return TflmRun(tags, np.asarray(rows, dtype=np.int64), totals, hashes)


def fnv1a(data: bytes) -> int:
    """FNV-1a 32 of ``data`` (the profiling image's output hash)."""
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def op_facts(facts: Any) -> list[dict[str, Any]]:
    """Per operator of the model (execution order): index, name, dtype and shape summary."""
    from tinydeploy.cruntime.graph import read_graph

    g = read_graph(facts)
    out = []
    for op in g.ops:
        ins = [g.t(i) for i in op.inputs if i >= 0 and not g.t(i).is_const] or \
              [g.t(i) for i in op.inputs if i >= 0]
        y = g.t(op.outputs[0])
        a, b = _SHORT.get(ins[0].dtype, ins[0].dtype), _SHORT.get(y.dtype, y.dtype)
        dtype = "16x8" if a == b == "i16" else a if a == b else f"{a}->{b}"
        shape = "x".join(map(str, ins[0].shape)) + "->" + "x".join(map(str, y.shape))
        out.append({"index": op.index, "op": op.name, "dtype": dtype, "shape": shape})
    return out


def model_inputs(name: str, samples: int) -> list[bytes]:
    """The first ``samples`` reference inputs of a shared model, every input's bytes joined."""
    files = [DATA / f"{name}.inputs.npy"]
    if not files[0].is_file():
        files = sorted(DATA.glob(f"{name}.inputs_*.npy"),
                       key=lambda f: int(f.stem.rsplit("_", 1)[1]))
    xs = [np.load(f) for f in files]
    n = min(samples, len(xs[0]))
    return [b"".join(np.ascontiguousarray(x[i]).tobytes() for x in xs) for i in range(n)]


# --- the C runtime ---------------------------------------------------------------------------
def ours(path: Path, inputs: list[bytes], n_ops: int, work: Path, patch: str = "auto"
         ) -> tuple[np.ndarray, bytes]:
    """Mean instructions per operator of the C runtime's profiling build, and the first
    sample's output bytes."""
    from tinydeploy.device.link import Link
    from tinydeploy.device.qemu import PROFILE, start_qemu
    from tinydeploy.profile import read_marks

    first = b""
    with start_qemu(path, work, profile=True, patch=patch) as proc, \
            Link(proc.port, timeout=120.0) as link:
        link.hello()
        for i, x in enumerate(inputs):
            reply = link.infer(x)
            if i == 0:
                first = bytes(reply.output)
    marks = read_marks(work / PROFILE, n_ops)
    return np.diff(marks, axis=1).mean(axis=0) * TICK, first


# --- TFLM + CMSIS-NN -------------------------------------------------------------------------
def _header(facts: Any, inputs: list[bytes]) -> str:
    from tinydeploy.c_array import hex_lines
    from tinydeploy.device.tflm_ops import resolver_ops

    ops = resolver_ops(facts)
    calls = " ".join(f"(r).{o['resolver']}();" for o in ops)
    model = hex_lines(Path(facts.path).read_bytes()).decode()
    data = hex_lines(b"".join(inputs)).decode()
    return (f"#define OPP_NUM_OPS {len(ops)}\n#define OPP_REGISTER_OPS(r) {calls}\n"
            f"#define OPP_ARENA_SIZE {ARENA}\n#define OPP_SAMPLES {len(inputs)}u\n"
            f"#define OPP_INPUT_BYTES {len(inputs[0])}u\n"
            f"alignas(16) static const unsigned char opp_model[] = {{\n{model}}};\n"
            f"static const unsigned char opp_inputs[] = {{\n{data}}};\n")


def build_tflm_profiler(facts: Any, inputs: list[bytes], tree: Any, work: Path) -> Path:
    """Build ``tflm_op_profiler.cpp`` for ``facts`` against ``tree`` (its operators'
    kernels from tinydeploy's TFLM object cache; the whole library if they are not enough)."""
    from tinydeploy.device import tflm_build as tb
    from tinydeploy.resources import firmware_dir

    work.mkdir(parents=True, exist_ok=True)
    (work / "op_model.h").write_text(_header(facts, inputs))
    tc = tb.toolchain("qemu-cm4")
    fw = firmware_dir()
    inc = [f"-I{work}", f"-I{fw / 'cm4'}", f"-I{fw / 'arduino_core'}",
           *(f"-isystem{d}" for d in tree.include_dirs)]
    objs = []
    board = [fw / "cm4" / f for f in ("cm4_startup.c", "cm4_uart.c", "cm4_timer.c")]
    for src in [PROFILER_SRC, *board, fw / "arduino_core" / "td_core_cm4.c"]:
        obj = work / f"{src.stem}.o"
        lang = tb.CXX_ONLY if src.suffix == ".cpp" else ("-std=c99",)
        cc = tc.cxx if src.suffix == ".cpp" else tc.cc
        tb._run([cc, *tc.cpu, *lang, *tb.COMMON, tb.CORE_OPT, *tb.APP_WARNINGS, *tree.defines,
                 *inc, "-c", str(src), "-o", str(obj)], f"compiling {src.name}")
        objs.append(str(obj))
    lib = tb.archive(tc, tb.compile_objects(tree, "qemu-cm4", tb.model_sources(
        tree, "qemu-cm4", facts.op_names), tc), work / "libtflm_model.a")
    elf = work / "tflm_op_profiler.elf"
    link = [tc.cxx, *tc.cpu, *tc.ldflags, "-T", str(fw / "cm4" / "cm4.ld"), *objs]
    proc = subprocess.run([*link, str(lib), "-lm", "-o", str(elf)], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        if "undefined reference" not in proc.stderr:
            raise RuntimeError(f"linking the TFLM profiling image failed:\n{proc.stderr}")
        lib = tb.build_tflm_library(tree, "qemu-cm4")
        tb._run([*link, str(lib), "-lm", "-o", str(elf)], "linking the TFLM profiling image")
    return elf


def run_image(elf: Path, timeout: float = QEMU_TIMEOUT) -> str:
    """Boot the image in QEMU (UART0 on stdout) and return its text up to DONE / ERROR."""
    from tinydeploy.boards import get_board
    from tinydeploy.device.arm_tools import QEMU

    cmd = [QEMU, "-M", str(get_board("qemu-cm4").qemu_machine), "-nographic", "-monitor",
           "none", "-serial", "stdio", "-icount", "shift=0", "-kernel", str(elf)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, errors="replace")
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(("DONE", "ERROR")) or time.monotonic() > deadline:
                break
    finally:
        proc.kill()
        proc.wait()
    return "".join(lines)


def tflm(facts: Any, inputs: list[bytes], tree: Any, work: Path) -> TflmRun:
    """TFLM + CMSIS-NN's per-operator ticks on ``inputs``."""
    return parse_tflm_output(run_image(build_tflm_profiler(facts, inputs, tree, work)))


# --- the table -------------------------------------------------------------------------------
def model_rows(name: str, ops: list[dict[str, Any]], our: np.ndarray, run: TflmRun,
               ) -> list[dict[str, Any]]:
    """One row per operator: ours and TFLM's mean instructions and their ratio."""
    if len(run.tags) != len(ops) or any(t != o["op"] for t, o in zip(run.tags, ops, strict=True)):
        raise ValueError(f"{name}: TFLM ran {run.tags}, the model has "
                         f"{[o['op'] for o in ops]}")
    theirs = run.ticks.mean(axis=0) * TICK
    return [{**o, "model": name, "ours": float(a), "cmsis": float(b),
             "ratio": float(a) / float(b) if b > 0 else float("inf")}
            for o, a, b in zip(ops, our, theirs, strict=True)]


def format_model(rows: list[dict[str, Any]], flag: float, min_instr: float) -> list[str]:
    lines = []
    for r in rows:
        mark = " <<" if r["ratio"] > flag and r["ours"] >= min_instr else ""
        lines.append(f"  {r['index']:3d} {r['op']:28} {r['dtype']:8} {r['shape']:28} "
                     f"{r['ours']:11.0f} {r['cmsis']:11.0f} {r['ratio']:6.2f}{mark}")
    return lines


def summary(rows: list[dict[str, Any]], min_instr: float) -> list[dict[str, Any]]:
    """Per (op, dtype): count, totals, total ratio and the worst ratio among operators of
    at least ``min_instr`` of ours (with its model and index)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["op"], r["dtype"]), []).append(r)
    out = []
    for (op, dtype), rs in groups.items():
        big = [r for r in rs if r["ours"] >= min_instr]
        worst = max(big, key=lambda r: r["ratio"]) if big else None
        ours_sum, cmsis_sum = sum(r["ours"] for r in rs), sum(r["cmsis"] for r in rs)
        out.append({"op": op, "dtype": dtype, "count": len(rs), "ours": ours_sum,
                    "cmsis": cmsis_sum, "ratio": ours_sum / cmsis_sum if cmsis_sum else 0.0,
                    "worst": worst["ratio"] if worst else None,
                    "worst_at": f"{worst['model']}#{worst['index']}" if worst else "-"})
    return sorted(out, key=lambda s: -s["ours"])


def format_summary(groups: list[dict[str, Any]], flag: float) -> list[str]:
    lines = [f"{'op':28} {'dtype':8} {'n':>3} {'ours':>11} {'cmsis_nn':>11} {'x_sum':>6} "
             f"{'worst':>6} where"]
    for s in groups:
        worst = f"{s['worst']:6.2f}" if s["worst"] is not None else "     -"
        mark = " <<" if s["worst"] is not None and s["worst"] > flag else ""
        lines.append(f"{s['op']:28} {s['dtype']:8} {s['count']:3d} {s['ours']:11.0f} "
                     f"{s['cmsis']:11.0f} {s['ratio']:6.2f} {worst} {s['worst_at']}{mark}")
    return lines


def merge_groups(rows: list[dict[str, Any]], inside: dict[int, int]) -> list[dict[str, Any]]:
    """Rows of operators run inside another's call added to that operator's row (both
    sides), labelled with every operator of the group: the profile cannot split them."""
    by = {r["index"]: dict(r) for r in rows}
    for k, lead in sorted(inside.items()):
        while lead in inside:  # a RELU fused into a streamed FC: the stream's producer
            lead = inside[lead]
        if k in by and lead in by:
            r, m = by[lead], by.pop(k)
            r["ours"] += m["ours"]
            r["cmsis"] += m["cmsis"]
            r["op"] = f"{r['op']}+{m['op']}"
    for r in by.values():
        r["ratio"] = r["ours"] / r["cmsis"] if r["cmsis"] > 0 else float("inf")
    return sorted(by.values(), key=lambda r: r["index"])


def measure_model(name: str, path: Path, inputs: list[bytes], tree: Any, work: Path,
                  expected: bytes | None, patch: str = "auto") -> tuple[list[dict[str, Any]], str]:
    """Both runtimes on one model: its rows and a header line (totals, output checks)."""
    from tinydeploy.facts import load

    facts = load(path)
    ops = op_facts(facts)
    our, our_out = ours(path, inputs, len(ops), work / "c", patch)
    run = tflm(facts, inputs, tree, work / "tflm")
    from tinydeploy.profile import run_inside

    rows = merge_groups(model_rows(name, ops, our, run),
                        run_inside((work / "c" / "model" / "td_model.c").read_text()))
    check = fnv1a(expected if expected is not None else our_out)
    tflm_ok = run.hashes[0] == check
    ours_ok = expected is None or our_out == expected
    whole = float(np.mean(run.totals)) * TICK
    line = (f"{name}: ours {our.sum():.0f}, TFLM+CMSIS-NN {sum(r['cmsis'] for r in rows):.0f} "
            f"in its ops ({whole:.0f} whole Invoke); outputs "
            f"{'equal' if tflm_ok and ours_ok else 'DIFFER'} "
            f"({'stored Cortex-M4 outputs' if expected is not None else 'TFLM = C runtime'})")
    return rows, line


def main(argv: list[str] | None = None) -> int:
    from tinydeploy.device.tflm_tree import ENV_SRC, find_tflm_tree
    from tinydeploy.errors import TinyDeployError

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", type=Path, default=os.environ.get(ENV_SRC) or None,
                    help=f"tflite-micro checkout with its downloads (default ${ENV_SRC})")
    ap.add_argument("--models", default=None, help="comma-separated shared models (default all)")
    ap.add_argument("--mcunet-vww", type=Path, default=None, help="TinyEngine's vww.tflite")
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--patch", default="auto", help="the C runtime's --patch (off: every "
                    "operator on its own; auto: as generated by default, a stage one row)")
    ap.add_argument("--flag", type=float, default=1.0)
    ap.add_argument("--min-instr", type=float, default=2000.0)
    ap.add_argument("--out", type=Path, default=None, help=f"also write the table (e.g. {RESULT})")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.tree is None or not Path(args.tree).is_dir():
        print(f"per_op_speed: skipped, no tflite-micro tree (pass --tree DIR or set {ENV_SRC}; "
              f"got {args.tree})", file=sys.stderr)
        return 2
    try:
        tree = find_tflm_tree(args.tree, flavour="cmsis-nn", board="qemu-cm4")
    except TinyDeployError as exc:  # e.g. no CMSIS-NN download in the tree
        print(f"per_op_speed: skipped, {args.tree} is no tflite-micro tree with CMSIS-NN: "
              f"{exc}", file=sys.stderr)
        return 2
    gt = json.loads((DATA / "ground_truth.json").read_text())
    names = args.models.split(",") if args.models else list(gt)
    jobs: list[tuple[str, Path, list[bytes], bytes | None]] = []
    for name in names:
        inputs = model_inputs(name, args.samples)
        want = np.load(DATA / f"{name}.outputs_cm4.npy")[0]
        jobs.append((name, DATA / f"{name}.tflite", inputs, want.tobytes()))
    if args.mcunet_vww:
        from mcunet_vww_tflm import vww_inputs

        from tinydeploy.facts import load

        x = vww_inputs(load(args.mcunet_vww), args.samples)
        jobs.append(("mcunet_vww", args.mcunet_vww, [s.tobytes() for s in x], None))
    lines = [f"per-operator instructions, qemu-cm4, mean of {args.samples} inputs, "
             f"--patch {args.patch} (operators run inside another's call share its row); "
             f"TFLM {tree.name} ({tree.flavour}); '<<' = above {args.flag}x with >= "
             f"{args.min_instr:.0f} of ours",
             f"  {'#':>3} {'op':28} {'dtype':8} {'shape':28} {'ours':>11} {'cmsis_nn':>11} "
             f"{'ratio':>6}"]
    rows: list[dict[str, Any]] = []
    ok = True
    with tempfile.TemporaryDirectory(prefix="td-per-op-") as tmp:
        for name, path, inputs, want in jobs:
            try:
                mrows, head = measure_model(name, path, inputs, tree, Path(tmp) / name, want,
                                            args.patch)
            except (TinyDeployError, ValueError, RuntimeError) as exc:  # the others still run
                lines.append(f"{name}: skipped ({exc})")
                print(lines[-1], flush=True)
                ok = False
                continue
            ok &= "DIFFER" not in head
            block = [head, *format_model(mrows, args.flag, args.min_instr)]
            print("\n".join(block), flush=True)
            lines += block
            rows += mrows
    lines += ["", "per (op, dtype): totals over all models, worst ratio among operators "
              f">= {args.min_instr:.0f} of ours", *format_summary(summary(rows, args.min_instr),
                                                                  args.flag)]
    text = "\n".join(lines) + "\n"
    print("\n".join(lines[-(len({(r["op"], r["dtype"]) for r in rows}) + 1):]))
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
