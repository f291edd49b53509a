"""The fuzz run's coverage table (operator x kernel path x regime, per target: models run,
mismatches) and what it did not cover."""

from __future__ import annotations

from collections import defaultdict

from .run import Summary

__all__ = ["EXPECTED_PATHS", "REGIMES", "missing", "table"]

# kernel paths every operator must show (the others report what they find)
EXPECTED_PATHS = {
    "CONV_2D/i8": ("fast", "fastg", "partial", "ref"),
    "DEPTHWISE_CONV_2D/i8": ("fastw", "fastwg"),
    "FULLY_CONNECTED/i8": ("fast", "fastg", "ref"), "CONV_2D/16x8": ("fast", "partial", "ref"),
    "DEPTHWISE_CONV_2D/16x8": ("fast", "partial", "ref"),
    "FULLY_CONNECTED/16x8": ("fast", "partial", "ref"),
    "UNIDIRECTIONAL_SEQUENCE_LSTM/i8": ("fast", "partial", "ref"),
    "ADD/i8": ("flat", "bcast", "lut"), "SUB/i8": ("flat", "bcast"), "MUL/i8": ("flat", "bcast"),
    "ADD/16x8": ("flat", "bcast"), "SUB/16x8": ("flat", "bcast"),
    "MUL/16x8": ("flat", "bcast"), "MEAN/i8": ("fast", "ref"),
    "MAX_POOL_2D/i8": ("simd4", "scalar", "simd4+tail"),
    "AVERAGE_POOL_2D/i8": ("simd4", "scalar", "simd4+tail"),
    "QUANTIZE/f32->i8": ("thr",),
}
OTHER_OPS = ("TRANSPOSE_CONV/i8", "TRANSPOSE_CONV/16x8", "MAXIMUM/i8", "MINIMUM/i8",
             "MAXIMUM/16x8", "MINIMUM/16x8", "CONCATENATION/i8", "PAD/i8", "PAD/16x8",
             "RESHAPE/i8", "RESHAPE/16x8", "EXPAND_DIMS/i8", "EXPAND_DIMS/16x8", "SQUEEZE/i8",
             "SQUEEZE/16x8", "STRIDED_SLICE/i8", "STRIDED_SLICE/16x8", "SOFTMAX/i8",
             "LOGISTIC/i8", "TANH/i8", "RELU/i8", "RELU6/i8", "LEAKY_RELU/i8",
             "LEAKY_RELU/16x8", "HARD_SWISH/i8", "QUANTIZE/i8->i8",
             "QUANTIZE/i8->i16", "QUANTIZE/i16->i8", "QUANTIZE/i16->i16", "DEQUANTIZE/i8->f32")
# the regimes issue 16 lists, as measured tags
REGIMES = ("per-tensor", "per-channel", "mult0:zero-weights", "mult0:tiny-scale",
           "mult0:denormal-scale", "shift>=0", "shift>=0:all", "narrow-act", "asym-zp",
           "zp=-128", "zp=127", "saturating", "rank-1", "batch-free")


def table(s: Summary, targets: list[str]) -> str:
    """One line per (operator, path): per target the models run and mismatches, then the
    regimes seen (models; ``/m!`` marks m mismatching models)."""
    keys = sorted({(lab, path) for (_, lab, path, _) in s.rows})
    width = max([len(lab) for lab, _ in keys] + [20])
    head = f"{'operator':<{width}} {'path':<16}" + "".join(f" {t:>16}" for t in targets)
    lines = [head + "  regimes (models[/mismatches!])", "-" * (len(head) + 40)]
    for lab, path in keys:
        cells = []
        regs: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for t in targets:
            n, m = s.rows.get((t, lab, path, "*"), [0, 0])
            cells.append(f" {n:>9} {('/' + str(m) + '!') if m else '':>6}")
            for (tt, ll, pp, reg), (rn, rm) in s.rows.items():
                if (tt, ll, pp) == (t, lab, path) and reg != "*":
                    regs[reg][0] += rn
                    regs[reg][1] += rm
        reg_text = ", ".join(f"{r} {n}" + (f"/{m}!" if m else "")
                             for r, (n, m) in sorted(regs.items()))
        lines.append(f"{lab:<{width}} {path:<16}" + "".join(cells) + "  " + reg_text)
    return "\n".join(lines)


def missing(s: Summary, target: str) -> list[str]:
    """Operators, kernel paths and regimes the run on ``target`` never reached."""
    seen = {(lab, path) for (t, lab, path, reg) in s.rows if t == target}
    labels = {lab for lab, _ in seen}
    regs = {reg for (t, _, _, reg) in s.rows if t == target}
    out = [f"operator {lab}" for lab in [*EXPECTED_PATHS, *OTHER_OPS] if lab not in labels]
    out += [f"path {lab} {p}" for lab, paths in EXPECTED_PATHS.items() for p in paths
            if lab in labels and (lab, p) not in seen]
    out += [f"regime {r}" for r in REGIMES if r not in regs]
    return out
