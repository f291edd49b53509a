"""tinydeploy's TFLM FULLY_CONNECTED kernel (firmware/td_tflm_fc.cpp) is bit-exact with
current TFLM's reference kernel (the TFLM Python runtime) on random int8 layers.

No TFLM tree is needed: tests/tflm_host/fc_harness.cpp plays the interpreter for one node
over the stand-in headers of tests/stubs (MicroContext temp tensors in Prepare, eval tensors
in Eval) and compiles with -Wall -Wextra -Werror. The layers cover per-channel and
per-tensor weights, with and without bias, every fused activation with an integer range,
keep_num_dims and several batches, channels whose multiplier has a shift >= 0 (the general
requantization form) or flushes to 0, odd depths, and a per-tensor weight zero point (TFLM's
reference loop). The kernel's per-channel tables fit exactly the pool the generator counts
(tflm_overrides), so it takes only its OpData from the arena; without a pool it takes the
arena and computes the same.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from fc_models import ACT, bits, fc_model, reference

from tinydeploy.facts import load
from tinydeploy.tflm_overrides import _fc_pool_words

ROOT = Path(__file__).resolve().parent.parent
FW = ROOT / "firmware"
STUBS = ROOT / "tests" / "stubs"
WARN = ["-Wall", "-Wextra", "-Werror"]
needs_gcc = pytest.mark.skipif(not (shutil.which("g++") and shutil.which("gcc")),
                               reason="g++/gcc not installed")


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The harness binary (kernel + td_kernels_conv*.c + stand-in TFLM)."""
    out = tmp_path_factory.mktemp("fc_harness")
    (out / "td_tflm_overrides.h").write_text("/* no board library on the host */\n")
    objs = []
    for c in ("td_kernels_fc_plain.c", "td_kernels_conv_ref.c"):
        obj = out / (c + ".o")
        subprocess.run(["gcc", "-std=c99", "-O2", *WARN, "-c", str(FW / c), "-o", str(obj)],
                       check=True)
        objs.append(str(obj))
    exe = out / "fc_harness"
    subprocess.run(["g++", "-std=c++17", "-O1", *WARN, f"-I{out}", f"-I{FW}", f"-I{STUBS}",
                    str(ROOT / "tests" / "tflm_host" / "fc_harness.cpp"),
                    str(FW / "td_tflm_fc.cpp"), *objs, "-o", str(exe)], check=True)
    return exe


def run_kernel(exe: Path, raw: dict, x: np.ndarray, pool_words: int) -> tuple[int, np.ndarray]:
    """(arena bytes the kernel took, outputs) of the harness on samples ``x``."""
    nums: list[int] = [len(raw["in_shape"]), *raw["in_shape"], len(raw["out_shape"]),
                       *raw["out_shape"], raw["rows"], raw["accum"], bits(raw["in_scale"]),
                       raw["in_zp"], bits(raw["out_scale"]), raw["out_zp"],
                       len(raw["w_scales"]), *(bits(w) for w in raw["w_scales"]), raw["w_zp"],
                       0, int(raw["bias"] is not None), raw["act"],
                       *raw["weights"].reshape(-1).tolist()]
    if raw["bias"] is not None:
        nums += raw["bias"].tolist()
    nums += [pool_words, len(x), *x.reshape(-1).tolist()]
    out = subprocess.run([str(exe)], input=" ".join(map(str, nums)), capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out[0].startswith("arena "), (out[:1], raw["w_scales"][:4])
    rows = [np.array(line.split(), dtype=np.int64) for line in out[1:]]
    return int(out[0].split()[1]), np.stack(rows).astype(np.int8)


CASES = [  # (rows, accum, input shape, keep_num_dims, per_channel, bias, activation, extra)
    (10, 32, [1, 32], False, True, True, "none", {}),
    (32, 128, [1, 128], False, True, True, "relu", {}),
    (7, 13, [1, 13], False, True, True, "relu6", {}),
    (5, 3, [3, 3], False, True, False, "none", {}),
    (16, 24, [1, 4, 24], True, True, True, "relu_n1_to_1", {}),
    (9, 20, [2, 3, 20], False, True, True, "none", {}),
    (64, 80, [1, 80], False, True, True, "relu", {"big_channel": True}),
    (12, 16, [1, 16], False, True, True, "none", {"dead_channel": True, "big_channel": True}),
    (20, 40, [1, 40], False, False, True, "relu", {}),
    (3, 5, [2, 5], False, False, False, "none", {}),
    (8, 9, [1, 9], False, False, True, "relu6", {"big_channel": True}),
    (6, 10, [1, 10], False, False, True, "none", {"w_zp": 3}),
]


@needs_gcc
@pytest.mark.parametrize("case", range(len(CASES)))
def test_kernel_is_bit_exact_with_tflm(harness: Path, case: int) -> None:
    rows, accum, shape, keep, pc, bias, act, extra = CASES[case]
    rng = np.random.default_rng(100 + case)
    model, raw = fc_model(rng, rows=rows, accum=accum, in_shape=shape, keep=keep,
                          per_channel=pc, bias=bias, act=act, **extra)
    facts = load(model)
    x = rng.integers(-128, 128, size=(12, *shape), dtype=np.int8)
    x[0], x[1] = -128, 127
    ref = reference(model, x)
    arena, got = run_kernel(harness, raw, x, _fc_pool_words(facts))
    np.testing.assert_array_equal(got, ref)
    assert arena <= 64  # OpData only: the tables fit the generator's pool
    arena, got = run_kernel(harness, raw, x, -1)  # no pool: the tables come from the arena
    np.testing.assert_array_equal(got, ref)
    assert arena > 64 or (not pc and (extra.get("w_zp") or False))


@needs_gcc
def test_random_layers_bit_exact(harness: Path) -> None:
    """120 random per-channel and per-tensor layers, 6 samples each."""
    rng = np.random.default_rng(7)
    for _ in range(120):
        rows, accum = int(rng.integers(1, 65)), int(rng.integers(1, 90))
        lead = [int(rng.integers(1, 4))] if rng.random() < 0.7 else [1, int(rng.integers(1, 4))]
        keep = len(lead) == 2 and rng.random() < 0.5
        model, raw = fc_model(rng, rows=rows, accum=accum, in_shape=[*lead, accum], keep=keep,
                              per_channel=rng.random() < 0.75, bias=rng.random() < 0.8,
                              act=str(rng.choice(list(ACT))),
                              big_channel=rng.random() < 0.2, dead_channel=rng.random() < 0.1)
        facts = load(model)
        x = rng.integers(-128, 128, size=(6, *lead, accum), dtype=np.int8)
        ref = reference(model, x)
        _, got = run_kernel(harness, raw, x, _fc_pool_words(facts))
        np.testing.assert_array_equal(got, ref, err_msg=f"rows {rows} accum {accum} {lead}")


@needs_gcc
def test_non_int8_and_bad_scales_refused_in_prepare(harness: Path) -> None:
    rng = np.random.default_rng(3)
    _, raw = fc_model(rng, rows=4, accum=8, in_shape=[1, 8], keep=False, per_channel=True,
                      bias=True, act="none")
    raw["w_scales"] = raw["w_scales"][:3]  # 3 scales for 4 rows
    nums_out = subprocess.run(
        [str(harness)], capture_output=True, text=True, check=True,
        input=" ".join(map(str, [2, 1, 8, 2, 1, 4, 4, 8, bits(0.01), 0, bits(0.1), 0, 3,
                                 *(bits(w) for w in raw["w_scales"]), 0, 0, 0, 0,
                                 *raw["weights"].reshape(-1).tolist(), 16, 0])))
    assert nums_out.stdout.strip() == "prepare failed"
    assert "per-channel scales do not match" in nums_out.stderr
