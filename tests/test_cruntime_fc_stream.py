"""FULLY_CONNECTED streaming (tinydeploy/cruntime/fc_stream.py): the FC's input is computed
by its producer band by band and summed slice by slice, never stored whole.

micro_speech (DEPTHWISE_CONV_2D 4,000 B -> FULLY_CONNECTED) takes it by default: the arena
drops from 4,164 B to under 2.5 KB, bit-exact with the Cortex-M4 ground truth. Generated
models force it (every candidate streamed, band heights 1..4, uneven last bands) on each
producer -- CONV_2D (padded, strided, 1x1 direct, pixel-pair im2col), DEPTHWISE_CONV_2D
(multiplier 1, 2 and 3, a fused RELU6), MAX/AVERAGE_POOL_2D, the reference conv (a bias
that does not fold) -- with or without a RESHAPE in between, FCs with 3..12 outputs,
per-tensor and per-channel, with and without bias, a shift >= 0 (td_fc_stream_endg), a
RELU6 fused into the FC; all compared byte for byte with TFLM's Python runtime in
the portable build on this machine and the DSP build on qemu-cm4 (one program / one
firmware image each). Weights one row off are caught. Not streamed: a filter zero point, a
16x8 FC, a producer output with a second reader, a producer run transposed, ``speed_first``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import needs_tflm
import numpy as np
import pytest

from tinydeploy.cruntime import fc_stream
from tinydeploy.cruntime.codegen import build as build_c
from tinydeploy.cruntime.graph import read_graph
from tinydeploy.cruntime.memplan import _plan
from tinydeploy.facts import load
from tinydeploy.fuzz.case import (
    Prepared,
    compare,
    patched_first,
    prepare,
    speed_first,
    transposed_first,
)
from tinydeploy.fuzz.host import HostRef
from tinydeploy.fuzz.models import Layer, Recipe, build
from tinydeploy.fuzz.targets import Case, run_cases
from tinydeploy.fuzz.weighted import out_size

if shutil.which("gcc") is None:
    pytest.skip("gcc not installed (apt-get install gcc)", allow_module_level=True)

DATA = Path(__file__).parent / "data"
MICRO = "micro_speech_quantized"
HAVE_QEMU = all(shutil.which(t) for t in ("arm-none-eabi-gcc", "qemu-system-arm"))
BASE = {"regime": "base", "w_zp": 0}  # FC: no filter zero point, a foldable bias


def _flat(h: int, w: int, c: int, k: int, s: int, pad: int, oc: int) -> int:
    """Elements of a producer's output (for the RESHAPE before the FC)."""
    return out_size(pad, h, k, s, 1) * out_size(pad, w, k, s, 1) * oc


# name: (input shape, layers (kind, parameters), band height)
CASES: dict[str, tuple[list[int], list[tuple[str, dict[str, Any]]], int]] = {
    "dw-m2-s2-same": ([1, 9, 8, 3], [
        ("DEPTHWISE_CONV_2D", {"kh": 3, "kw": 3, "stride_h": 2, "stride_w": 2, "padding": 0,
                               "dil_h": 1, "dil_w": 1, "depth_mult": 2, "per_channel": True,
                               "regime": "base", "act": 0}),
        ("RESHAPE", {"shape": [1, _flat(9, 8, 3, 3, 2, 0, 6)]}),
        ("FULLY_CONNECTED", {**BASE, "out_c": 7, "has_bias": False, "per_channel": True})], 2),
    "dw-m3-valid-relu6": ([1, 10, 7, 2], [
        ("DEPTHWISE_CONV_2D", {"kh": 3, "kw": 2, "stride_h": 1, "stride_w": 1, "padding": 1,
                               "dil_h": 1, "dil_w": 1, "depth_mult": 3, "regime": "base",
                               "act": 0}),
        ("RELU6", {}),
        ("FULLY_CONNECTED", {**BASE, "out_c": 12, "has_bias": True, "flatten": True,
                             "per_channel": False})], 3),
    "conv-valid-odd-rows": ([1, 8, 7, 2], [
        ("CONV_2D", {"kh": 3, "kw": 2, "stride_h": 1, "stride_w": 1, "padding": 1, "dil_h": 1,
                     "dil_w": 1, "out_c": 5, "regime": "base", "act": 1}),
        ("FULLY_CONNECTED", {**BASE, "out_c": 3, "has_bias": False, "flatten": True,
                             "per_channel": False})], 1),
    "conv-same-s2-shift": ([1, 10, 9, 4], [
        ("CONV_2D", {"kh": 3, "kw": 3, "stride_h": 2, "stride_w": 2, "padding": 0, "dil_h": 1,
                     "dil_w": 1, "out_c": 6, "regime": "shift>=0", "act": 0}),
        ("FULLY_CONNECTED", {"regime": "shift>=0", "out_c": 9, "has_bias": True,
                             "flatten": True, "per_channel": True})], 2),
    "conv-dilated-1x1": ([1, 11, 6, 3], [
        ("CONV_2D", {"kh": 3, "kw": 3, "stride_h": 1, "stride_w": 1, "padding": 0, "dil_h": 2,
                     "dil_w": 1, "out_c": 4, "regime": "base", "act": 0}),
        ("CONV_2D", {"kh": 1, "kw": 1, "stride_h": 1, "stride_w": 1, "padding": 1, "dil_h": 1,
                     "dil_w": 1, "out_c": 16, "regime": "base", "act": 0}),
        ("RESHAPE", {"shape": [1, 11 * 6 * 16]}),
        ("FULLY_CONNECTED", {**BASE, "out_c": 4, "has_bias": True, "per_channel": True})], 4),
    "maxpool-s2": ([1, 12, 10, 8], [
        ("MAX_POOL_2D", {"fh": 2, "fw": 2, "stride_h": 2, "stride_w": 2, "padding": 1,
                         "act": 0}),
        ("RESHAPE", {"shape": [1, 6 * 5 * 8]}),
        ("FULLY_CONNECTED", {**BASE, "out_c": 9, "has_bias": True, "per_channel": True}),
        ("RELU6", {})], 2),
    "conv-ref-huge-bias": ([1, 7, 6, 3], [  # bias + offset x sums beyond int32: td_conv2d_ref
        ("CONV_2D", {"kh": 2, "kw": 3, "stride_h": 1, "stride_w": 2, "padding": 0, "dil_h": 1,
                     "dil_w": 1, "out_c": 8, "regime": "huge-bias", "act": 0}),
        ("FULLY_CONNECTED", {**BASE, "out_c": 8, "has_bias": True, "flatten": True,
                             "per_channel": False})], 3),
    "avgpool-same-s2": ([1, 11, 9, 5], [
        ("AVERAGE_POOL_2D", {"fh": 3, "fw": 3, "stride_h": 2, "stride_w": 2, "padding": 0,
                             "act": 0}),
        ("FULLY_CONNECTED", {**BASE, "out_c": 4, "has_bias": False, "flatten": True,
                             "per_channel": False})], 4),
}


def _seed(k: int) -> int:
    """A seed the fuzzer builds size-first, not transposed, without a forced patch stage (a
    producer run transposed or in a stage, or speed_first, streams nothing)."""
    s = 940_000 + 17 * k
    while speed_first(s) or transposed_first(s) or patched_first(s):
        s += 1
    return s


def _recipe(k: int, name: str) -> Recipe:
    shape, layers, _ = CASES[name]
    rng = np.random.default_rng(k)
    return Recipe(_seed(k), shape, "INT8", float(rng.uniform(0.01, 0.1)),
                  int(rng.integers(-128, 128)),
                  [Layer(kind, int(rng.integers(1 << 31)), dict(p)) for kind, p in layers])


@pytest.fixture
def force(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Stream every candidate with band height ``force["h"]`` (the policy bypassed)."""
    want = {"h": 1}

    def forced(g: Any, found: Any, arena: Any) -> tuple[tuple[Any, ...], int]:
        return tuple(replace(s, height=want["h"]) for s in found), arena(())

    monkeypatch.setattr(fc_stream, "choose", forced)
    yield want


def _micro_case() -> tuple[Case, bytes, dict[str, Any]]:
    """micro_speech's 16 reference inputs as a case, its Cortex-M4 outputs expected."""
    texts, res = build_c(load(DATA / f"{MICRO}.tflite"))
    x = np.load(DATA / f"{MICRO}.inputs.npy")
    want = np.load(DATA / f"{MICRO}.outputs_cm4.npy")
    case = Case(key=1, texts=texts, inputs=x.tobytes(), samples=len(x), in_bytes=x[0].nbytes,
                out_bytes=want[0].nbytes)
    return case, b"".join(b"\x00" + w.tobytes() for w in want), res.memory()


@pytest.fixture(scope="module")
def cases() -> dict[str, Prepared]:
    """Every model of CASES prepared with its band height forced."""
    needs_tflm.require_tflm()
    out = {}
    with pytest.MonkeyPatch.context() as mp, HostRef() as host:
        for k, name in enumerate(CASES):
            h = CASES[name][2]
            mp.setattr(fc_stream, "choose", lambda g, found, arena, h=h: (
                tuple(replace(s, height=h) for s in found), arena(())))
            p, kind, why = prepare(build(_recipe(k, name)), host)
            assert p is not None, f"{name}: {kind} {why}"
            out[name] = p
    return out


def _check(cases: dict[str, Prepared], target: str, work: Path) -> None:
    micro, expected, _ = _micro_case()
    got = run_cases([micro, *(p.case for p in cases.values())], target, work)
    bad = [(n, why) for n, p in cases.items() if (why := compare(p, got.get(p.case.key, "?")))]
    assert got.get(1) == expected, f"{target}: micro_speech differs from the Cortex-M4 truth"
    assert not bad, f"{target}: {bad}"


def test_micro_speech_streams_by_default() -> None:
    """The input (1,960 B), the band, the sums and the 4-byte output: under half of TFLM's
    arena + interpreter on the Cortex-M4 (ground_truth.json), the 4,000-B depthwise output
    gone (4,164 B without streaming when this was written)."""
    _, _, mem = _micro_case()
    [s] = mem["fc_streaming"]
    assert (s["producer"], s["fc"]) == (1, 2) and s["bands"] > 1
    unstreamed = _plan(read_graph(load(DATA / f"{MICRO}.tflite")), None, False)[3].size
    assert mem["saved_bytes"]["fc_streaming"] == unstreamed - mem["ram_bytes"] > 1500
    assert mem["ram_bytes"] <= 1960 + 3 + s["acc_bytes"] + s["band_bytes"] + 4
    gt = json.loads((DATA / "ground_truth.json").read_text())[MICRO]
    tflm = gt["arena_used_bytes_cm4"] + gt["cm4_bss"] - gt["cm4_arena_in_bss"]
    assert mem["ram_bytes"] < 0.5 * tflm
    texts, res = build_c(load(DATA / f"{MICRO}.tflite"), speed_first=True)
    assert "fc_streaming" not in res.memory() and "td_fc_stream" not in texts["td_model.c"]


def test_every_case_is_streamed(cases: dict[str, Prepared]) -> None:
    for name, p in cases.items():
        text = p.case.texts["td_model.c"]
        assert f"row bands of {CASES[name][2]}, each band's slice summed" in text, name
        assert "td_fully_connected_fast" not in text, name
        assert {lp.path for lp in p.layers if lp.label == "FULLY_CONNECTED/i8"} == {"stream"}
    assert "td_fc_stream_endg(" in cases["conv-same-s2-shift"].case.texts["td_model.c"]
    assert "fused into op" not in cases["dw-m3-valid-relu6"].case.texts["td_model.c"]
    assert "fused into op 2" in cases["maxpool-s2"].case.texts["td_model.c"]  # RELU6 after FC
    assert "td_conv2d_ref(&q" in cases["conv-ref-huge-bias"].case.texts["td_model.c"]


def test_portable_build_equals_tflm(cases: dict[str, Prepared], tmp_path: Path) -> None:
    _check(cases, "native", tmp_path)


@pytest.mark.skipif(not HAVE_QEMU, reason="arm-none-eabi-gcc / qemu-system-arm missing")
def test_dsp_build_on_qemu_equals_tflm(cases: dict[str, Prepared], tmp_path: Path) -> None:
    _check(cases, "qemu-cm4", tmp_path)


def test_a_wrong_weight_offset_is_caught(cases: dict[str, Prepared], force: dict[str, int],
                                         monkeypatch: pytest.MonkeyPatch, tmp_path: Path
                                         ) -> None:
    """Every weight one input row off (the filter's columns rotated by a row): each model
    then differs from TFLM, so the comparison above would see such a bug."""
    right = fc_stream.bands4_layout
    monkeypatch.setattr(fc_stream, "bands4_layout",
                        lambda w, s: right(np.roll(w, s.row_bytes, axis=1), s))
    wrong = {}
    for name, p in cases.items():
        force["h"] = CASES[name][2]
        texts, _ = build_c(load(p.built.data), speed_first=False)
        wrong[name] = replace(p, case=replace(p.case, texts=texts))
    got = run_cases([p.case for p in wrong.values()], "native", tmp_path)
    assert all(compare(p, got[p.case.key]) for p in wrong.values())


def test_what_is_not_streamed(force: dict[str, int]) -> None:
    """A filter zero point, a 16x8 FC, a producer output with a second reader or that is a
    model output, a producer run transposed keep the whole input (the FC's usual kernel)."""
    g = read_graph(load(DATA / f"{MICRO}.tflite"))
    [s] = fc_stream.candidates(g)
    g.outputs.append(s.chain[0])
    assert fc_stream.candidates(g) == []
    g.outputs.pop()
    g.ops[3].inputs.append(s.chain[0])  # SOFTMAX reading the depthwise output too
    assert fc_stream.candidates(g) == []
    _, res = build_c(load(DATA / f"{MICRO}.tflite"), force_transposed=True)
    assert res.memory()["transposed_ops"] == [1] and "fc_streaming" not in res.memory()
    conv = ("CONV_2D", {"kh": 3, "kw": 3, "stride_h": 1, "stride_w": 1, "padding": 0,
                        "dil_h": 1, "dil_w": 1, "out_c": 4, "regime": "base", "act": 0})
    fc = {"out_c": 5, "flatten": True, "regime": "base", "per_channel": False, "w_zp": 0}
    models = {
        "filter zero point": ("INT8", [conv, ("FULLY_CONNECTED", {**fc, "w_zp": 5})]),
        "16x8": ("INT16", [conv, ("FULLY_CONNECTED", fc)]),
    }
    for k, (why, (dtype, layers)) in enumerate(models.items()):
        rec = Recipe(_seed(50 + k), [1, 6, 5, 3], dtype, 0.0004 if dtype == "INT16" else 0.05,
                     0, [Layer(kind, 7 + k, dict(p)) for kind, p in layers])
        g = read_graph(load(build(rec).data))
        assert fc_stream.candidates(g) == [], why
        texts, res = build_c(load(build(rec).data))
        assert "fc_streaming" not in res.memory(), why
    ok = Recipe(_seed(60), [1, 6, 5, 3], "INT8", 0.05, 0,
                [Layer(kind, 9, dict(p)) for kind, p in (conv, ("FULLY_CONNECTED", fc))])
    assert len(fc_stream.candidates(read_graph(load(build(ok).data)))) == 1
