"""The LSTM kernel's fast requantizations (td_lstm_requant in firmware/td_kernels_lstm.c)
equal TFLM's MultiplyByQuantizedMultiplier wherever the generator lets a layer use them.

Whole-model checks (test_cruntime_ext_ops / test_cruntime_cm4) rarely meet the rounding
ties on which the forms could differ, so this drives the kernel function itself (host
build, plain C) with the generator's own constants (``rq_init``) over values that
``fast_requant_ok`` admits -- up to its limits, and small values full of exact ties --
against the Python model of TFLM's arithmetic (tinydeploy.cruntime.fixedpoint.mbqm).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np

from tinydeploy.cruntime.emit_lstm import fast_requant_ok, rq_init
from tinydeploy.cruntime.fixedpoint import mbqm
from tinydeploy.cruntime.harness import STRICT_FLAGS, compile_c
from tinydeploy.resources import firmware_dir

CHECK_C = r"""
#include <stdio.h>
#include "td_model.h"
#include "td_kernels_lstm.c"
const uint16_t td_sigmoid_table[256];
int main(void) {
  long v[7];
  while (scanf("%ld %ld %ld %ld %ld %ld %ld", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
               &v[6]) == 7) {
    const td_lstm_rq q = {(int32_t)v[1], (int32_t)v[2], (int32_t)v[3], (int32_t)v[4],
                          (int32_t)v[5], (int32_t)v[6]};
    const int32_t x = (int32_t)v[0];
    printf("%ld %ld %ld\n", (long)td_lstm_requant(&q, x, 0), (long)td_lstm_requant(&q, x, 1),
           q.shift < 0 ? (long)td_lstm_requant(&q, x, 2) : 0L);
  }
  return 0;
}
"""


def _cases(rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """(x, mult, shift) with |x| within a bound the generator accepts for (mult, shift)."""
    out = []
    for shift in range(-31, 4):
        for mult in (1 << 30, (1 << 31) - 1, *(int(m) for m in rng.integers(1 << 30, 1 << 31,
                                                                         size=3))):
            # the largest admitted bound, then values up to it and small ones (ties)
            lo, hi = 0, (1 << 31) - 1
            while lo < hi:
                mid = (lo + hi + 1) // 2
                lo, hi = (mid, hi) if fast_requant_ok(mid, mult, shift) else (lo, mid - 1)
            bound = lo
            xs = [bound, -bound, 0, 1, -1]
            xs += [int(v) for v in rng.integers(-bound, bound + 1, size=40)]
            xs += [int(v) for v in rng.integers(-4096, 4097, size=60) if abs(v) <= bound]
            out += [(x, mult, shift) for x in xs]
    return out


def test_fast_requantization_equals_tflm(tmp_path: Path) -> None:
    (tmp_path / "td_model.h").write_text("#define TD_MODEL_HAS_LSTM 1\n")
    (tmp_path / "check.c").write_text(CHECK_C)
    fw = firmware_dir()
    exe = compile_c([tmp_path / "check.c", fw / "td_kernels.c"], tmp_path / "check",
                    [tmp_path, fw], flags=(*STRICT_FLAGS, "-DTD_PORTABLE"), opt="-O2")
    cases = _cases(np.random.default_rng(7))
    lines = []
    for x, m, s in cases:
        fields = [int(v) for v in re.findall(r"-?\d+", rq_init(m, s))]
        lines.append(" ".join(str(v) for v in (x, *fields)))
    res = subprocess.run([str(exe)], input="\n".join(lines) + "\n", capture_output=True,
                         text=True, timeout=60, check=True)
    got = [tuple(int(v) for v in row.split()) for row in res.stdout.splitlines()]
    assert len(got) == len(cases)
    ties = 0
    for (x, m, s), (general, fast, fast2) in zip(cases, got, strict=True):
        want = mbqm(x, m, s)
        assert general == want, (x, m, s)
        assert fast == want, f"fast form: x={x} mult={m} shift={s}: {fast} != {want}"
        if s < 0:
            assert fast2 == want, f"fast form 2: x={x} mult={m} shift={s}: {fast2} != {want}"
            hi = (x * m + (1 << 30)) >> 31
            ties += hi < 0 and hi % (1 << -s) == 1 << (-s - 1)
    assert ties > 100  # the values really hit negative exact halves (half away from zero)
