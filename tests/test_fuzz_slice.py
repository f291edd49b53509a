"""The CI slice of the differential fuzzer (``benchmarks/fuzz_cruntime.py`` runs it at
scale): a fixed-seed set of random int8 and 16x8 models through TFLM's Python interpreter
and the C runtime -- the portable build on this machine, every fourth model also the DSP
build on qemu-cm4 -- byte for byte. Mismatches matching a known, not yet fixed issue
(``tinydeploy/fuzz/known.py``) are reported but tolerated; any other fails the test with the
saved model's path. The slice must reach the main kernel paths, and it must fail when a
kernel's rounding or its filter layout is broken on purpose (a patched copy of firmware/).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import needs_tflm
import pytest

from tinydeploy.fuzz.run import Summary, fuzz
from tinydeploy.resources import firmware_dir

pytestmark = needs_tflm.mark  # differential: the TFLM Python interpreter is one side

if shutil.which("gcc") is None:
    pytest.skip("gcc not installed (apt-get install gcc)", allow_module_level=True)

SEED = 16_000
N_MODELS = 200
QEMU_EVERY = 4  # 50 of them on qemu-cm4 too
QEMU_TOOLS = ("arm-none-eabi-gcc", "qemu-system-arm")
HAVE_QEMU = all(shutil.which(t) for t in QEMU_TOOLS)

# (operator, kernel path) rows the fixed slice reaches (tinydeploy/fuzz/paths.py)
REQUIRED = [
    ("CONV_2D/i8", "fast"), ("CONV_2D/i8", "partial"), ("DEPTHWISE_CONV_2D/i8", "fastw"),
    ("DEPTHWISE_CONV_2D/i8", "fastwg"), ("FULLY_CONNECTED/i8", "fast"),
    ("FULLY_CONNECTED/i8", "ref"), ("MAX_POOL_2D/i8", "simd4+tail"),
    ("AVERAGE_POOL_2D/i8", "scalar"), ("ADD/i8", "flat"), ("SUB/i8", "flat"),
    ("MUL/i8", "flat"), ("CONV_2D/16x8", "fast"), ("DEPTHWISE_CONV_2D/16x8", "ref"),
    ("FULLY_CONNECTED/16x8", "fast"), ("UNIDIRECTIONAL_SEQUENCE_LSTM/i8", "partial"),
]


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def slice_run(tmp_path_factory: pytest.TempPathFactory) -> Summary:
    targets = ["native", *(["qemu-cm4"] if HAVE_QEMU else [])]
    out = tmp_path_factory.mktemp("fuzz-slice")
    return fuzz(N_MODELS, SEED, targets, out, batch=N_MODELS, shrink_max=0,
                qemu_every=QEMU_EVERY, log=_quiet)


def _report(s: Summary, target: str) -> str:
    return "\n".join(f"seed {m['seed']}: {m['why']}: {m['model']} ({', '.join(m['layers'])})"
                     for m in s.new_mismatches(target))


def test_native_portable_equals_tflm(slice_run: Summary) -> None:
    assert slice_run.run["native"] >= 0.95 * N_MODELS  # few discarded
    assert not slice_run.new_mismatches("native"), _report(slice_run, "native")


@pytest.mark.skipif(not HAVE_QEMU, reason="arm-none-eabi-gcc / qemu-system-arm missing")
def test_qemu_dsp_equals_tflm(slice_run: Summary) -> None:
    assert slice_run.run["qemu-cm4"] >= 0.95 * N_MODELS / QEMU_EVERY
    assert not slice_run.new_mismatches("qemu-cm4"), _report(slice_run, "qemu-cm4")


def test_slice_reaches_the_main_kernel_paths(slice_run: Summary) -> None:
    seen = {(lab, path) for (t, lab, path, _) in slice_run.rows if t == "native"}
    assert [r for r in REQUIRED if r not in seen] == []
    regimes = {reg for (t, _, _, reg) in slice_run.rows if t == "native"}
    assert {"per-channel", "per-tensor", "mult0", "shift>=0", "narrow-act", "zp=-128",
            "zp=127", "rank-1", "batch-free", "transposed", "patched"} <= regimes
    transposed = {(t, lab) for (t, lab, _, reg) in slice_run.rows if reg == "transposed"}
    assert {("native", "CONV_2D/i8"), ("native", "DEPTHWISE_CONV_2D/i8")} <= transposed


# (file, exact text, replacement): a rounding slip in the fast requantization (the
# portable form's 2^30 of TFLM's first rounding dropped) and a filter-layout slip (two rows
# of each interleaved group of four swapped in the portable dot product)
BREAKS = {
    "rounding": ("td_simd.h", "(0x40000000u | (t << 31))", "(t << 31)"),
    "layout": ("td_kernels_conv.c", "      a1 += w[4 + j] * xv;\n      a2 += w[8 + j] * xv;\n",
               "      a1 += w[8 + j] * xv;\n      a2 += w[4 + j] * xv;\n"),
}


@pytest.mark.parametrize("kind", sorted(BREAKS))
def test_slice_catches_a_broken_kernel(kind: str, tmp_path: Path) -> None:
    """...and prints a smaller model that still fails (the layout case shrinks one)."""
    name, old, new = BREAKS[kind]
    fw = tmp_path / "firmware"
    shutil.copytree(firmware_dir(), fw)
    text = (fw / name).read_text()
    assert text.count(old) == 1, f"{name} changed: update BREAKS[{kind!r}]"
    (fw / name).write_text(text.replace(old, new))
    s = fuzz(60, SEED, ["native"], tmp_path / "out", batch=60, log=_quiet, firmware=fw,
             shrink_max=int(kind == "layout"), shrink_budget=15)
    new_ones = s.new_mismatches("native")
    assert len(new_ones) >= 2
    if kind == "layout":
        info = s.shrunk[0]
        found = next(m for m in new_ones if m["seed"] == info["seed"])
        assert Path(info["model"]).is_file() and Path(info["model"]).with_suffix(".npz").is_file()
        assert "differ" in info["note"]  # it still mismatches
        assert info["tries"] > 0 and Path(info["model"]).stat().st_size <= \
            Path(found["model"]).stat().st_size
