"""Pieces of the C runtime's fast paths checked on the host: the generator's LOGISTIC/TANH
tables against the fixed-point C kernels, the interleaved filter layout, scratch placement
in the memory plan, and the per-layer profile of the native board."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tinydeploy.cli import main
from tinydeploy.cruntime import fixedpoint, quant
from tinydeploy.cruntime.emit import interleave_rows
from tinydeploy.cruntime.harness import compile_c
from tinydeploy.cruntime.planner import Buffer, add_buffers, plan
from tinydeploy.data import Dataset
from tinydeploy.facts import load
from tinydeploy.hostref import dequantize
from tinydeploy.resources import firmware_dir

DATA = Path(__file__).parent / "data"

SIGMOID_MAIN = r"""#include <stdio.h>
#include <stdlib.h>
#include "td_kernels.h"
int main(int argc, char **argv) {
  td_sigmoid_params p;
  int8_t in[256], out[256];
  int i;
  (void)argc;
  p.size = 256;
  p.in_zp = atoi(argv[2]);
  p.radius = atoi(argv[3]);
  p.mult = atoi(argv[4]);
  p.left_shift = atoi(argv[5]);
  for (i = 0; i < 256; ++i) in[i] = (int8_t)(i - 128);
  if (argv[1][0] == 'l') td_logistic(&p, in, out); else td_tanh(&p, in, out);
  for (i = 0; i < 256; ++i) printf("%d ", out[i]);
  return 0;
}
"""


def test_sigmoid_tables_equal_the_fixed_point_kernels(tmp_path: Path) -> None:
    main_c = tmp_path / "main.c"
    main_c.write_text(SIGMOID_MAIN)
    exe = compile_c([main_c, firmware_dir() / "td_kernels.c"], tmp_path / "sig",
                    [firmware_dir()])
    rng = np.random.default_rng(3)
    scales = [*np.exp(rng.uniform(np.log(1e-4), np.log(2.0), 12)), 1 / 256, 0.0078125]
    for scale in scales:
        for zp in (int(rng.integers(-128, 128)), -128):
            mult, shift, radius = quant.sigmoid_params(float(np.float32(scale)))
            for kind in ("logistic", "tanh"):
                out = subprocess.run([str(exe), kind, str(zp), str(radius), str(mult),
                                      str(shift)], capture_output=True, text=True, check=True)
                want = [int(v) for v in out.stdout.split()]
                assert fixedpoint.sigmoid_lut(kind, zp, radius, mult, shift) == want, \
                    (kind, scale, zp)


def test_interleaved_filter_layout() -> None:
    rows = np.arange(6 * 7).reshape(6, 7)  # 6 output channels, K = 7
    got = interleave_rows(rows).tolist()
    group = [0, 1, 2, 3, 7, 8, 9, 10, 14, 15, 16, 17, 21, 22, 23, 24,  # 4 k of rows 0-3
             4, 5, 6, 11, 12, 13, 18, 19, 20, 25, 26, 27]  # then each row's 3-byte tail
    assert got == group + list(range(28, 42))  # rows 4, 5 as they are
    assert sorted(got) == list(range(42))


def test_scratch_goes_into_a_free_gap() -> None:
    bufs = [Buffer(1, "a", 100, 0, 1), Buffer(2, "b", 60, 1, 2), Buffer(3, "c", 100, 2, 3)]
    mem = plan(bufs)
    grown = add_buffers(mem, [Buffer(-3, "op 2 scratch", 30, 2, 2),
                              Buffer(-1, "op 0 scratch", 500, 0, 0)])
    scratch2 = next(b for b in grown.buffers if b.tensor == -3)
    assert grown.size == max(mem.size, 500 + 100) and scratch2.offset + 30 <= grown.size
    live = [b for b in grown.buffers if b.first <= 2 <= b.last and b.tensor != -3]
    assert all(scratch2.offset >= b.offset + b.size or scratch2.offset + 30 <= b.offset
               for b in live)


def _npz(name: str, path: Path) -> Path:
    facts = load(DATA / f"{name}.tflite")
    x = dequantize(np.load(DATA / f"{name}.inputs.npy")[:4], facts.inputs[0])
    y = np.zeros(len(x), np.float32)
    return Dataset(x_train=x, y_train=y, x_val=x, y_val=y, x_test=x, y_test=y).save(path)


def test_validate_profile_native_per_layer_times(tmp_path: Path) -> None:
    from tinydeploy.validation import validate

    name = "digits_cnn"
    r = validate(DATA / f"{name}.tflite", _npz(name, tmp_path / "d.npz"), tmp_path / "v",
                 board="native", profile=True)
    assert r.passed and len(r.layers) == 6
    assert [row["op"] for row in r.layers][:2] == ["CONV_2D", "DEPTHWISE_CONV_2D"]
    assert all(row["cost"] >= 0 for row in r.layers) and r.layers[0]["cost"] > 0
    doc = json.loads((tmp_path / "v" / "validation.json").read_text())
    assert doc["layers"]["unit"] == "ns" and len(doc["layers"]["rows"]) == 6
    assert "Per-layer cost" in (tmp_path / "v" / "report.html").read_text()


def test_profile_needs_a_profiling_board(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["validate", str(DATA / "sine_mlp.tflite"), "--data",
               str(_npz("sine_mlp", tmp_path / "d.npz")), "--out", str(tmp_path / "v"),
               "--board", "sim", "--profile"])
    cap = capsys.readouterr()
    assert rc == 2 and "--profile" in cap.out + cap.err
    assert not (tmp_path / "v").exists()
