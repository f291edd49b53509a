"""Transposed execution (tinydeploy/cruntime/transpose.py): an operator run on its tensors
with H and W swapped, between two in-place transpositions, when that lets its output
overwrite its input sooner.

* The cycle-leader transposition reproduces numpy's transpose for every shape class
  (square, 1-wide, prime sizes, seanet_conv0's 8 x 166).
* seanet_conv0 (one 16x8 CONV_2D, 7x7 over 8 x 166): the plan drops from 9,136 B to
  max(input, output) + 32 B (test_cruntime_memory runs it bit for bit on native and
  qemu-cm4).
* Random int8 / 16x8 convolutions, depthwise convolutions and pools, alone or inside a
  chain (transposed input or output not a model input / output), with strides,
  dilations and both paddings, forced transposed: bit for bit equal to TFLM on the host
  build, one on qemu-cm4; a TD_IO_BUFFERS build (the caller's buffers) gives the caller's
  input back unchanged.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import needs_tflm
import numpy as np
import pytest
from test_cruntime_ext_ops import _random_inputs, _shape, _tflm

from tinydeploy.cruntime import generate_c, transpose
from tinydeploy.cruntime.harness import STRICT_FLAGS, build_harness, compile_c, run_harness_bytes
from tinydeploy.facts import load
from tinydeploy.fuzz.models import Recipe, build
from tinydeploy.fuzz.net import Layer

DATA = Path(__file__).parent / "data"
HAS_QEMU = all(shutil.which(t) for t in ("arm-none-eabi-gcc", "qemu-system-arm"))
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")


def _apply(a: np.ndarray, leaders: list[int]) -> np.ndarray:
    """td_transpose_px's cycle following, in Python, on a rows x cols x px array."""
    rows, cols = a.shape[:2]
    flat = a.reshape(rows * cols, -1).copy()
    m = rows * cols - 1
    for s in leaders:
        tmp, i = flat[s].copy(), s
        while (j := i * cols % m) != s:
            flat[i], i = flat[j], j
        flat[i] = tmp
    return flat.reshape(cols, rows, -1)


@pytest.mark.parametrize("rows,cols", [(2, 3), (3, 2), (5, 5), (8, 166), (7, 13), (2, 2),
                                       (16, 4), (31, 3)])
def test_leaders_transpose_in_place(rows: int, cols: int) -> None:
    a = np.arange(rows * cols * 3).reshape(rows, cols, 3)
    assert np.array_equal(_apply(a, transpose.leaders(rows, cols)), a.transpose(1, 0, 2))
    broken = transpose.leaders(rows, cols)[1:]  # a cycle left out must show
    if broken != transpose.leaders(rows, cols):
        assert not np.array_equal(_apply(a, broken), a.transpose(1, 0, 2))


def test_seanet_conv0_plan_shrinks() -> None:
    from tinydeploy.cruntime.codegen import build as build_c

    _, res = build_c(load(DATA / "seanet_conv0.tflite"))
    mem = res.memory()
    assert mem["transposed_ops"] == [0]
    assert mem["arena_bytes"] <= max(5312, 5120) + 64 < 9136
    assert mem["saved_bytes"]["transposed"] == 9136 - mem["arena_bytes"]


def _conv(kind: str, **p: object) -> Layer:
    return Layer(kind, 7 + len(p), dict(p))


# (name, input shape, dtype, layers): the operator under test is the one with "x": True
CASES = [
    ("conv8_tall", [1, 6, 23, 3], "INT8",
     [_conv("CONV_2D", kh=5, kw=3, padding=1, stride_h=1, stride_w=1, dil_h=1, dil_w=1,
            out_c=8)]),
    ("conv16_tall", [1, 7, 19, 2], "INT16",
     [_conv("CONV_2D", kh=6, kw=3, padding=1, stride_h=1, stride_w=1, dil_h=1, dil_w=1,
            out_c=8)]),
    ("conv8_same_strided", [1, 9, 11, 4], "INT8",
     [_conv("CONV_2D", kh=3, kw=5, padding=0, stride_h=2, stride_w=1, dil_h=1, dil_w=1,
            out_c=5)]),
    ("conv8_dilated", [1, 10, 12, 2], "INT8",
     [_conv("CONV_2D", kh=3, kw=2, padding=1, stride_h=1, stride_w=2, dil_h=2, dil_w=1,
            out_c=6)]),
    ("dw8_mult2", [1, 5, 17, 4], "INT8",
     [_conv("DEPTHWISE_CONV_2D", kh=4, kw=3, padding=1, stride_h=1, stride_w=1, dil_h=1,
            dil_w=1, depth_mult=2)]),
    ("dw8_same_strided", [1, 6, 9, 3], "INT8",
     [_conv("DEPTHWISE_CONV_2D", kh=3, kw=3, padding=0, stride_h=1, stride_w=2, dil_h=1,
            dil_w=1, depth_mult=1)]),
    ("maxpool", [1, 6, 14, 4], "INT8",
     [_conv("MAX_POOL_2D", fh=5, fw=2, padding=1, stride_h=1, stride_w=1, act=0)]),
    ("avgpool_same", [1, 7, 8, 3], "INT8",
     [_conv("AVERAGE_POOL_2D", fh=3, fw=4, padding=0, stride_h=2, stride_w=1, act=0)]),
    ("chain_middle", [1, 8, 12, 2], "INT8",
     [_conv("CONV_2D", kh=3, kw=3, padding=0, stride_h=1, stride_w=1, dil_h=1, dil_w=1,
            out_c=4),
      _conv("CONV_2D", kh=6, kw=3, padding=1, stride_h=1, stride_w=1, dil_h=1, dil_w=1,
            out_c=6),
      _conv("CONV_2D", kh=1, kw=1, padding=0, stride_h=1, stride_w=1, dil_h=1, dil_w=1,
            out_c=3)]),
]


def _built(name: str, shape: list[int], dtype: str, layers: list[Layer], tmp: Path) -> Path:
    from tinydeploy.fuzz.net import act_quant

    scale, zp = act_quant(np.random.default_rng(len(name)), dtype)
    b = build(Recipe(len(name), shape, dtype, scale, zp, layers, name))
    path = tmp / f"{name}.tflite"
    path.write_bytes(b.data)
    return path


@pytest.fixture
def forced(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every applicable operator transposed, whether or not the plan shrinks."""
    monkeypatch.setattr(transpose, "MIN_GAIN", -(1 << 30))


@needs_gcc
@needs_tflm.mark
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_forced_transposed_bit_exact(case: tuple, tmp_path: Path, forced: None) -> None:
    name, shape, dtype, layers = case
    path = _built(name, shape, dtype, layers, tmp_path)
    facts = load(path)
    res = generate_c(facts, tmp_path / "c", tflm_arena=False)
    mem = json.loads((res.out_dir / "memory.json").read_text())
    assert mem.get("transposed_ops"), f"{name}: nothing transposed"
    samples = _random_inputs(facts, 6, 3)
    ref = _tflm(facts, samples)
    outs = [(_shape(t), t.numpy_dtype) for t in facts.outputs]
    got = run_harness_bytes(build_harness(res.out_dir), samples, outs, reset=True)
    for k, (g, r) in enumerate(zip(got, ref, strict=True)):
        assert np.array_equal(g[0], r[0]), f"{name}: sample {k} differs from TFLM"


IO_MAIN = r"""/* TD_IO_BUFFERS: the caller's buffers; the input must come back unchanged */
#include <stdio.h>
#include <string.h>
#include "td_model.h"

int main(void) {
  static int8_t in[TD_MODEL_INPUT_SIZE], keep[TD_MODEL_INPUT_SIZE];
  static int8_t out[TD_MODEL_OUTPUT_SIZE];
  while (fread(in, 1, TD_MODEL_INPUT_SIZE, stdin) == TD_MODEL_INPUT_SIZE) {
    memcpy(keep, in, sizeof in);
    if (td_invoke(in, out) != 0) return 2;
    if (memcmp(keep, in, sizeof in) != 0) return 5;
    fwrite(out, 1, TD_MODEL_OUTPUT_SIZE, stdout);
  }
  return 0;
}
"""


@needs_gcc
@needs_tflm.mark
def test_io_buffers_build_keeps_the_callers_input(tmp_path: Path) -> None:
    from tinydeploy.cruntime.codegen import MODEL_SOURCES

    path = DATA / "seanet_conv0.tflite"
    facts = load(path)
    res = generate_c(facts, tmp_path / "c", tflm_arena=False)
    main = res.out_dir / "io_main.c"
    main.write_text(IO_MAIN)
    exe = compile_c([main, *(res.out_dir / f for f in MODEL_SOURCES)], res.out_dir / "io",
                    [res.out_dir], flags=(*STRICT_FLAGS, "-DTD_IO_BUFFERS"))
    samples = _random_inputs(facts, 4, 3)
    proc = subprocess.run([str(exe)], input=b"".join(s[0].tobytes() for s in samples),
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, f"exit {proc.returncode} (5: the input was changed)"
    want = b"".join(r[0].tobytes() for r in _tflm(facts, samples))
    assert proc.stdout == want


@needs_gcc
@needs_tflm.mark
@pytest.mark.skipif(not HAS_QEMU, reason="arm-none-eabi-gcc and qemu-system-arm needed")
def test_forced_chain_on_qemu(tmp_path: Path, forced: None) -> None:
    from test_cruntime_memory import _qemu_outputs

    name, shape, dtype, layers = CASES[-1]
    path = _built(name, shape, dtype, layers, tmp_path)
    facts = load(path)
    samples = _random_inputs(facts, 3, 3)
    got = _qemu_outputs(path, samples, tmp_path / "q", [facts.outputs[0].numpy_dtype])
    ref = _tflm(facts, samples)
    assert all(np.array_equal(g[0], r[0]) for g, r in zip(got, ref, strict=True))
    assert "td_transpose_px(" in (tmp_path / "q" / "model" / "td_model.c").read_text()
