"""The conv/FC kernels' one-multiply requantization (td_requant_rq in firmware/td_simd.h)
and the general form's left shift (td_requant_lsh) equal TFLM's two-step arithmetic, and
layers outside its domain (a channel with a non-negative shift) or with a narrower activation
range than int8 stay bit-exact.

The whole-model checks edit digits_cnn (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED): the
convolution's output zero point moves up so its fused ReLU clamps inside the int8 range,
and the depthwise output scale shrinks so a channel's multiplier is >= 0.5 (shift >= 0).
Both the host build (portable C) and, where the Arm tools exist, qemu-cm4 (SMLAL/SSAT
assembly) must equal the TFLM Python runtime on the edited model.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import needs_tflm
import numpy as np
import pytest

from tinydeploy.cruntime import generate_c
from tinydeploy.cruntime.harness import build_harness, run_harness
from tinydeploy.facts import load
from tinydeploy.hostref import HostModel

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")

CHECK_C = r"""
#include <stdio.h>
#include "td_simd.h"
static uint32_t s = 2463534242u;
static uint32_t next(void) { s ^= s << 13; s ^= s >> 17; s ^= s << 5; return s; }
int main(void) {
  long bad = 0, n = 0;
  int32_t sh;
  for (sh = 0; sh <= 30; ++sh) {
    int i;
    for (i = 0; i < 40000; ++i) {
      const int32_t m = i == 0 ? 1 << 30 : i == 1 ? 0x7fffffff : (int32_t)(next() >> 1);
      int32_t x = (int32_t)next();
      if (i & 1) x >>= next() % 31; /* small magnitudes: many exact ties */
      if (i == 2) x = INT32_MIN;
      if (i == 3) x = INT32_MAX;
      ++n;
      if (td_requant_rq(x, m, sh) != td_requant(x, m, -(sh + 1))) ++bad;
      /* a dead channel ({0, sh}) gives 0, as TFLM's multiplier 0 does */
      if (td_requant_rq(x, 0, sh) != 0) ++bad;
      /* the general form's shift >= 0 (left shift sh, wrapping as TFLM's int32 product) */
      if (td_requant_lsh(x, m, sh) != td_requant(x, m, sh)) ++bad;
    }
  }
  printf("%ld %ld\n", n, bad);
  return 0;
}
"""


@needs_gcc
def test_one_multiply_requant_equals_tflm_two_step(tmp_path: Path) -> None:
    src = tmp_path / "check.c"
    src.write_text(CHECK_C)
    exe = tmp_path / "check"
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{ROOT / 'firmware'}",
                    str(src), "-o", str(exe)], check=True)
    n, bad = (int(v) for v in subprocess.run([str(exe)], check=True, capture_output=True,
                                             text=True).stdout.split())
    assert n == 31 * 40000 and bad == 0


def _edited_digits() -> bytes:
    """digits_cnn with a narrow ReLU range on CONV_2D and a shift >= 0 on the depthwise."""
    import flatbuffers

    base = load(DATA / "digits_cnn.tflite")
    model = copy.deepcopy(base.model)
    sub = model.subgraphs[0]
    names = [base.op_names[i] for i in range(len(sub.operators))]
    conv = sub.operators[names.index("CONV_2D")]
    dw = sub.operators[names.index("DEPTHWISE_CONV_2D")]
    conv_out = sub.tensors[int(conv.outputs[0])].quantization
    conv_out.zeroPoint = [-40]  # ReLU clamps at -40: act_min inside the int8 range
    x_q = sub.tensors[int(dw.inputs[0])].quantization
    w_q = sub.tensors[int(dw.inputs[1])].quantization
    y_q = sub.tensors[int(dw.outputs[0])].quantization
    # channel 0's effective multiplier becomes 0.75: QuantizeMultiplier shift 0
    y_q.scale = [float(np.float32(x_q.scale[0] * w_q.scale[0] / 0.75))]
    pool = sub.operators[names.index("MAX_POOL_2D")]  # TFLM: pooling keeps its quantization
    sub.tensors[int(pool.outputs[0])].quantization = copy.deepcopy(y_q)
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


@needs_gcc
@needs_tflm.mark
def test_shift_and_activation_edge_layers_bit_exact(tmp_path: Path) -> None:
    facts = load(_edited_digits())
    res = generate_c(facts, tmp_path / "c", tflm_arena=False)
    text = "\n".join(p.read_text() for p in res.out_dir.glob("*.c"))
    assert "_rq[" in text and "_shift[" in text  # both requantization forms generated
    assert ".act_min = -40" in text

    rng = np.random.default_rng(11)
    x = rng.integers(-128, 128, size=(24, *facts.inputs[0].shape[1:]), dtype=np.int8)
    x[0], x[1] = -128, 127
    ref = HostModel(facts).predict(x)
    y = run_harness(build_harness(res.out_dir), x, facts.outputs[0].shape[1:])
    np.testing.assert_array_equal(y, ref.reshape(y.shape))
    if all(shutil.which(t) for t in ("arm-none-eabi-gcc", "qemu-system-arm")):
        from tinydeploy.device.link import Link
        from tinydeploy.device.qemu import start_qemu

        path = tmp_path / "edited.tflite"
        path.write_bytes(_edited_digits())
        with start_qemu(path, tmp_path / "fw") as proc, \
                Link(proc.port, timeout=30.0) as link:
            link.hello()
            for i in range(8):
                got = np.frombuffer(bytes(link.infer(x[i].tobytes()).output), dtype=np.int8)
                np.testing.assert_array_equal(got, ref[i].reshape(-1))


def test_pool_with_changed_quantization_refused(tmp_path: Path) -> None:
    import flatbuffers

    from tinydeploy.errors import TinyDeployError

    facts = load(_edited_digits())
    model = copy.deepcopy(facts.model)
    sub = model.subgraphs[0]
    pool = sub.operators[facts.op_names.index("MAX_POOL_2D")]
    sub.tensors[int(pool.outputs[0])].quantization.zeroPoint = [3]
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    with pytest.raises(TinyDeployError, match="MAX_POOL_2D input and output quantization"):
        generate_c(load(bytes(b.Output())), tmp_path / "c", tflm_arena=False)
    assert not (tmp_path / "c").exists()
