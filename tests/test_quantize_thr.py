"""td_quantize_f32_thr (float32 graph input -> int8 by 255 generator-made thresholds) gives
td_quantize_f32's result (TFLM's AffineQuantize: float division, round half away from
zero) for every float: native C, both kernels on the same bit patterns -- random ones over
the whole 32-bit space, each threshold and its neighbours, zeros, infinities, NaNs,
denormals -- for scales and zero points from tiny to huge."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tinydeploy.cruntime.emit_base import c_array
from tinydeploy.cruntime.f32thr import key, thresholds

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"
CASES = [(0.007874016, 0), (0.0039215689, -128), (1.0, 127), (3.0e-39, 5), (2.5e30, -3),
         (0.5, 0), (1e-5, -40), (0.02, 100)]

MAIN = r"""
#include <stdio.h>
#include <string.h>
#include "td_kernels.h"
int main(void) {
  int32_t c, i, bad = 0;
  for (c = 0; c < NCASES; ++c) {
    static int8_t a[NBITS], b[NBITS];
    td_quantize_f32(NBITS, scales[c], zps[c], (const uint8_t *)bits[c], a);
    td_quantize_f32_thr(NBITS, thr[c], scales[c], zps[c], (const uint8_t *)bits[c], b);
    for (i = 0; i < NBITS; ++i)
      if (a[i] != b[i] && bad++ < 5)
        printf("case %d bits %08x: division %d thresholds %d\n", (int)c,
               (unsigned)bits[c][i], a[i], b[i]);
  }
  printf("mismatches %d\n", (int)bad);
  return 0;
}
"""


def _patterns(thr: list[int], rng: np.random.Generator, n: int) -> np.ndarray:
    special = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001,
                        0x7F800001, 1, 0x80000001, 0x007FFFFF, 0x00800000], dtype=np.int64)
    t = np.array(thr, dtype=np.int64)
    near = (t[:, None] + np.arange(-3, 4)[None, :]).reshape(-1)
    near = near[(near >= -(2**31)) & (near < 2**31)]
    near_bits = key(near.astype(np.int32).view(np.uint32)).astype(np.int64) & 0xFFFFFFFF
    rand = rng.integers(0, 2**32, n - len(special) - len(near_bits), dtype=np.int64)
    return np.concatenate([special, near_bits, rand]).astype(np.uint32)


@pytest.mark.skipif(not shutil.which("gcc"), reason="needs gcc")
def test_thresholds_equal_division(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    n = 40000
    decls, bits_rows, thr_rows = [], [], []
    for c, (scale, zp) in enumerate(CASES):
        thr = thresholds(scale, zp)
        assert len(thr) == 255 and thr == sorted(thr)
        decls.append(c_array(f"thr{c}", "int32_t", thr))
        decls.append(c_array(f"bits{c}", "uint32_t", _patterns(thr, rng, n)))
        bits_rows.append(f"bits{c}")
        thr_rows.append(f"thr{c}")
    head = [f"#include <stdint.h>\n#define NCASES {len(CASES)}\n#define NBITS {n}", *decls,
            "static const float scales[] = {" + ", ".join(f"{s!r}f" for s, _ in CASES) + "};",
            "static const int32_t zps[] = {" + ", ".join(str(z) for _, z in CASES) + "};",
            f"static const uint32_t *const bits[] = {{{', '.join(bits_rows)}}};",
            f"static const int32_t *const thr[] = {{{', '.join(thr_rows)}}};"]
    src = tmp_path / "t.c"
    src.write_text("\n".join(head) + MAIN)
    exe = tmp_path / "t"
    subprocess.run(["gcc", "-O1", "-std=c99", "-Wall", "-Wextra", "-Werror", "-I", str(FIRMWARE),
                    str(src), str(FIRMWARE / "td_kernels_io.c"), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("mismatches 0"), out


def test_threshold_edges() -> None:
    """With |v / scale| <= 3.4 every finite float reaches -3 (-inf saturates to -128, so
    the threshold is -FLT_MAX's key) and none reaches 4 (+inf does: +inf's key)."""
    thr = thresholds(1e38, 0)
    k = key(np.array([0xFF7FFFFF, 0x7F800000], dtype=np.uint32))
    assert thr[:125] == [int(k[0])] * 125 and thr[131:] == [int(k[1])] * 124
    assert k[0] < thr[125] < thr[130] < k[1]
