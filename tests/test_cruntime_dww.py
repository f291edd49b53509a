"""DEPTHWISE_CONV_2D on td_depthwise_conv2d_fastw (int16-widened weights, any depth
multiplier): multipliers 1 to 12 (one input channel per group of four outputs, two with the
SMLAxy halves chosen per group, the 3x3 interior run, edge pixels, strides) equal TFLM's
Python runtime byte for byte, in the portable build on this machine and the DSP build on
qemu-cm4 -- all models of the test in one program / one firmware image (a few seconds)."""

from __future__ import annotations

import shutil
from pathlib import Path

import needs_tflm
import numpy as np
import pytest

from tinydeploy.fuzz.case import Prepared, compare, prepare
from tinydeploy.fuzz.host import HostRef
from tinydeploy.fuzz.models import Invalid, Layer, Recipe, build
from tinydeploy.fuzz.targets import run_cases

pytestmark = needs_tflm.mark  # differential: the TFLM Python interpreter is one side

if shutil.which("gcc") is None:
    pytest.skip("gcc not installed (apt-get install gcc)", allow_module_level=True)

HAVE_QEMU = all(shutil.which(t) for t in ("arm-none-eabi-gcc", "qemu-system-arm"))
MULTIPLIERS = (1, 2, 3, 4, 5, 6, 8, 12)
# (input shape, fixed layer parameters): random window, a 3x3 stride-1 / stride-2 window
SHAPES = (([1, 7, 6, 3], {}), ([2, 6, 5, 5], {"kh": 3, "kw": 3}),
          ([1, 9, 8, 2], {"kh": 3, "kw": 3, "stride_h": 2, "stride_w": 2}),
          ([1, 8, 8, 1], {}))


@pytest.fixture(scope="module")
def cases() -> list[tuple[int, Prepared]]:
    out = []
    with HostRef() as host:
        for k, (m, (shape, fixed)) in enumerate(
                (m, s) for m in MULTIPLIERS for s in SHAPES):
            rng = np.random.default_rng(k)
            rec = Recipe(970_000 + k, shape, "INT8", float(rng.uniform(0.01, 0.1)),
                         int(rng.integers(-128, 128)),
                         [Layer("DEPTHWISE_CONV_2D", int(rng.integers(1 << 31)),
                                {"depth_mult": m, **fixed})])
            try:
                p, _, _ = prepare(build(rec), host)
            except Invalid:
                continue
            if p is not None:
                out.append((m, p))
    return out


def _check(cases: list[tuple[int, Prepared]], target: str, work: Path) -> None:
    got = run_cases([p.case for _, p in cases], target, work)
    bad = [(m, p.case.key, why) for m, p in cases
           if (why := compare(p, got.get(p.case.key, "not run")))]
    assert not bad, f"{target}: {bad[:5]}"


def test_every_multiplier_takes_the_widened_kernel(cases: list[tuple[int, Prepared]]) -> None:
    assert {m for m, _ in cases} == set(MULTIPLIERS)
    paths = {lp.path for _, p in cases for lp in p.layers if lp.label == "DEPTHWISE_CONV_2D/i8"}
    assert paths and paths <= {"fastw", "fastwg"}


def test_portable_build_equals_tflm(cases: list[tuple[int, Prepared]], tmp_path: Path) -> None:
    _check(cases, "native", tmp_path)


@pytest.mark.skipif(not HAVE_QEMU, reason="arm-none-eabi-gcc / qemu-system-arm missing")
def test_dsp_build_on_qemu_equals_tflm(cases: list[tuple[int, Prepared]],
                                       tmp_path: Path) -> None:
    _check(cases, "qemu-cm4", tmp_path)
