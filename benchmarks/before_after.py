"""The before/after table of issue 18 from two outputs of ``cortex_m4_speed.py``.

Reads the per-model rows of both tables the benchmark prints (instructions next to
TFLM+CMSIS-NN, and RAM besides the protocol next to TFLM's arena + interpreter) from a
stored "before" output and an "after" one, and prints one Markdown table: per model the
instructions and their ratio to CMSIS-NN, the RAM and its ratio to TFLM, before and after,
and the memory techniques the plan used after. Totals: the instruction sum's ratio.

    python benchmarks/before_after.py benchmarks/results/cortex_m4_ram_before.txt \\
        benchmarks/results/cortex_m4_speed_final_s17.txt
"""

from __future__ import annotations

import argparse
from pathlib import Path


def parse(path: Path) -> dict[str, dict[str, str]]:
    """model -> {instr, cmsis, x_cmsis, ram, tflm_ram, x_tflm, techniques} (what is there)."""
    rows: dict[str, dict[str, str]] = {}
    table = ""
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts[:2] == ["model", "instr"]:
            table = "speed"
        elif parts[:2] == ["model", "ram"]:
            table = "ram"
        elif table == "speed" and len(parts) == 13 and parts[1].isdigit():
            rows.setdefault(parts[0], {}).update(instr=parts[1], cmsis=parts[2],
                                                 x_cmsis=parts[3])
        elif table == "ram" and len(parts) == 5 and parts[1].isdigit():
            rows.setdefault(parts[0], {}).update(ram=parts[1], tflm_ram=parts[2],
                                                 x_tflm=parts[3], techniques=parts[4])
    return rows


def table(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]) -> str:
    """The Markdown table (models of ``after``)."""
    out = ["| model | instructions before | after | x CMSIS-NN before | after | RAM before "
           "| after | x TFLM before | after | techniques after |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    tot = {"b": 0, "a": 0, "c": 0}
    for name, a in after.items():
        b = before.get(name, {})
        if "instr" in a and "instr" in b:
            tot["b"] += int(b["instr"])
            tot["a"] += int(a["instr"])
            tot["c"] += int(a["cmsis"])
        out.append("| " + " | ".join([
            name, f"{int(b['instr']):,}" if "instr" in b else "-",
            f"{int(a['instr']):,}" if "instr" in a else "-", b.get("x_cmsis", "-"),
            a.get("x_cmsis", "-"), f"{int(b['ram']):,}" if "ram" in b else "-",
            f"{int(a['ram']):,}" if "ram" in a else "-", b.get("x_tflm", "-"),
            a.get("x_tflm", "-"), a.get("techniques", "-").replace("+", ", ")]) + " |")
    if tot["c"]:
        out.append(f"\nSum over the models in both: {tot['b']:,} -> {tot['a']:,} instructions "
                   f"= {tot['b'] / tot['c']:.3f}x -> {tot['a'] / tot['c']:.3f}x CMSIS-NN.")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    a = ap.parse_args()
    print(table(parse(a.before), parse(a.after)))


if __name__ == "__main__":
    main()
