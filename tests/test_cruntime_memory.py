"""The C runtime's memory techniques, each forced and checked bit for bit.

* Inputs and outputs inside the static plan: the application writes td_input(k), calls
  td_invoke(NULL, NULL) and reads td_output(k) (no copies; td_invoke(in, out) copies only
  where its buffers are not the planned ones), the qemu-cm4 firmware binds the protocol to
  the planned buffers (no I/O buffers of its own): the two-input ADD model needs 32 KB
  instead of 48 KB.
* In-place execution: an operator's output over the input it consumes last -- core int8
  kernels (convolutions, depthwise, pooling, element-wise, at the distance overlap.py
  proves) and the extension's kernels: element-wise (int8/int16 SUB, MAXIMUM, MUL, ADD,
  LEAKY_RELU, requantize), DEQUANTIZE to float32 (the wider output ending where its input
  ends) and the 16x8 CONV_2D (pixel pairs). memory.json
  lists each such operator; every model here is compared with the TFLM Python runtime on
  the host build and on qemu-cm4.
* Patch-based execution: person_detect's first four operators forced into 12 row bands
  (``patch=(0, 3, 12)``), bit-exact, 19.3 KB instead of 37.3 KB, halo rows carried (every
  output computed once; residual blocks: tests/test_cruntime_patch.py; the planner's own
  choice, ``patch="auto"``: tests/test_patch_auto.py).
* Fusion: a RELU / RELU6 after a FULLY_CONNECTED, ADD or CONV_2D folds into the producer's
  clamp (models here get one appended: the converter already fuses what it can).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_cruntime_ext_ops import _random_inputs, _shape, _tflm
from test_cruntime_ops import _append_quantize

from tinydeploy.cruntime import generate_c
from tinydeploy.cruntime.graph import read_graph
from tinydeploy.cruntime.harness import build_harness, compile_c, run_harness_bytes
from tinydeploy.facts import load

DATA = Path(__file__).parent / "data"
EXT = DATA / "ext_ops"
HAS_QEMU = all(shutil.which(t) for t in ("arm-none-eabi-gcc", "arm-none-eabi-nm",
                                         "qemu-system-arm"))
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")

# model -> the in-place operator (name/dtype of its output) the plan must use
IN_PLACE = {
    DATA / "simple_add_model.tflite": "ADD/INT8",
    DATA / "seanet_add0.tflite": "ADD/INT16",
    DATA / "digits_cnn.tflite": "DEPTHWISE_CONV_2D/INT8",
    DATA / "pad_gap_cnn.tflite": "RELU/INT8",
    DATA / "tanh_mlp.tflite": "TANH/INT8",
    EXT / "sub_inputs_0.tflite": "SUB/INT8",
    EXT / "maximum_0.tflite": "MAXIMUM/INT8",
    EXT / "mul16_0.tflite": "MUL/INT16",
    EXT / "pad_leaky16_0.tflite": "LEAKY_RELU/INT16",
    DATA / "seanet_conv0.tflite": "CONV_2D/INT16",
    EXT / "conv16_1.tflite": "CONV_2D/INT16",
    DATA / "float_io" / "detect_like.tflite": "DEQUANTIZE/FLOAT32",  # 4x wider, same end
    DATA / "float_io" / "float16x8.tflite": "DEQUANTIZE/FLOAT32",  # from int16
}

ZERO_COPY_MAIN = r"""/* planned I/O: inputs written in place, td_invoke(NULL, NULL), outputs read */
#include <stdio.h>
#include <string.h>
#include "td_model.h"

int main(void) {
  static uint8_t in[TD_MODEL_INPUT_SIZE];
  const uint32_t in_off[TD_NUM_INPUTS + 1] = {
      %(in_offsets)s, TD_MODEL_INPUT_SIZE};
  const uint32_t out_off[TD_NUM_OUTPUTS + 1] = {
      %(out_offsets)s, TD_MODEL_OUTPUT_SIZE};
  int k;
  if (td_input(TD_NUM_INPUTS) != NULL || td_output(-1) != NULL) return 4;
  while (fread(in, 1, TD_MODEL_INPUT_SIZE, stdin) == TD_MODEL_INPUT_SIZE) {
    td_reset();
    for (k = 0; k < TD_NUM_INPUTS; ++k)
      memcpy(td_input(k), in + in_off[k], in_off[k + 1] - in_off[k]);
    if (td_invoke(NULL, NULL) != 0) return 2;
    for (k = 0; k < TD_NUM_OUTPUTS; ++k)
      fwrite(td_output(k), 1, out_off[k + 1] - out_off[k], stdout);
  }
  return 0;
}
"""


def _qemu_outputs(path: Path, samples: list[list[np.ndarray]], work: Path,
                  dtypes: list[np.dtype], patch: Any = "auto") -> list[list[np.ndarray]]:
    """Every sample through the protocol on a freshly built qemu-cm4 firmware."""
    from tinydeploy.device.link import Link
    from tinydeploy.device.qemu import start_qemu

    facts = load(path)
    got = []
    with start_qemu(path, work, patch=patch) as proc, Link(proc.port, timeout=60.0) as link:
        link.hello()
        for s in samples:
            raw = bytes(link.infer(b"".join(np.ascontiguousarray(x).tobytes() for x in s),
                                   reset=True).output)
            row, off = [], 0
            for t, dt in zip(facts.outputs, dtypes, strict=True):
                n = int(np.prod(_shape(t), dtype=np.int64)) * np.dtype(dt).itemsize
                row.append(np.frombuffer(raw[off:off + n], dtype=dt).reshape(_shape(t)))
                off += n
            got.append(row)
    return got


def _samples(facts: Any, n: int, seed: int) -> list[list[np.ndarray]]:
    """Random samples: integer inputs over their whole range, float32 ones N(0, 1)."""
    if all(t.dtype != "FLOAT32" for t in facts.inputs):
        return _random_inputs(facts, n, seed)
    rng = np.random.default_rng(seed)
    return [[rng.normal(0, 1.0, size=_shape(t)).astype(np.float32) for t in facts.inputs]
            for _ in range(n)]


def _assert_equal(got: list[list[np.ndarray]], ref: list[list[np.ndarray]], what: str) -> None:
    for k, (g, r) in enumerate(zip(got, ref, strict=True)):
        for j, (a, b) in enumerate(zip(g, r, strict=True)):
            assert np.array_equal(a, b), f"{what}: sample {k} output {j} differs from TFLM"


@needs_gcc
@pytest.mark.parametrize("path", list(IN_PLACE), ids=[p.stem for p in IN_PLACE])
def test_in_place_path_bit_exact(path: Path, tmp_path: Path) -> None:
    facts = load(path)  # (no patch stage: it would take some of these operators)
    res = generate_c(facts, tmp_path / "c", tflm_arena=False, patch="off")
    mem = json.loads((res.out_dir / "memory.json").read_text())
    used = {f"{o['name']}/{o['dtype']}" for o in mem["in_place_ops"]}
    assert IN_PLACE[path] in used, used
    assert mem["saved_bytes"]["in_place"] >= 0  # (none where another layout ties)
    assert mem["ram_bytes"] <= mem["live_tensor_lower_bound"]
    samples = _samples(facts, 12, 5)
    dtypes = [t.numpy_dtype for t in facts.outputs]
    ref = _tflm(facts, samples)
    outs = [(_shape(t), t.numpy_dtype) for t in facts.outputs]
    _assert_equal(run_harness_bytes(build_harness(res.out_dir), samples, outs, reset=True),
                  ref, "native")
    if HAS_QEMU:
        _assert_equal(_qemu_outputs(path, samples[:6], tmp_path / "q", dtypes, patch="off"),
                      ref[:6], "qemu-cm4")


@needs_gcc
def test_inputs_outputs_in_the_plan_zero_copy(tmp_path: Path) -> None:
    """simple_add_model (two 16 KB inputs, one 16 KB output): the output overwrites an
    input inside the plan, 32 KB of RAM where the separate I/O buffers took 48 KB; the
    zero-copy API and the protocol on qemu-cm4 (no I/O buffers of its own) give the
    Cortex-M4 ground truth."""
    path = DATA / "simple_add_model.tflite"
    facts = load(path)
    res = generate_c(facts, tmp_path / "c", tflm_arena=False)
    mem = json.loads((res.out_dir / "memory.json").read_text())
    assert mem["ram_bytes"] == 32768 and mem["live_tensor_lower_bound"] == 49152
    assert mem["saved_bytes"]["inputs_outputs_in_plan"] == 16384
    assert mem["saved_bytes"]["in_place"] == 16384
    assert "#define TD_PLANNED_IO 1" in (res.out_dir / "td_model.h").read_text()
    xs = [np.load(DATA / f"simple_add_model.inputs_{k}.npy")[:8] for k in range(2)]
    want = np.load(DATA / "simple_add_model.outputs_cm4.npy")[:8]
    offsets = np.cumsum([0, *(x[0].nbytes for x in xs)])[:-1]
    main = res.out_dir / "zero_copy_main.c"
    main.write_text(ZERO_COPY_MAIN % {"in_offsets": ", ".join(f"{o}u" for o in offsets),
                                      "out_offsets": "0u"})
    from tinydeploy.cruntime.codegen import MODEL_SOURCES

    exe = compile_c([main, *(res.out_dir / f for f in MODEL_SOURCES)],
                    res.out_dir / "zero_copy", [res.out_dir])
    blob = b"".join(x[i].tobytes() for i in range(len(want)) for x in xs)
    out = subprocess.run([str(exe)], input=blob, capture_output=True, timeout=60, check=True)
    assert out.stdout == want.tobytes()
    if not HAS_QEMU:
        return
    samples = [[x[i] for x in xs] for i in range(3)]
    got = _qemu_outputs(path, samples, tmp_path / "q", [want.dtype])
    assert all(np.array_equal(g[0], want[i].reshape(g[0].shape)) for i, g in enumerate(got))
    from tinydeploy.device.qemu import ELF

    nm = subprocess.run(["arm-none-eabi-nm", str(tmp_path / "q" / ELF)], check=True,
                        capture_output=True, text=True).stdout
    symbols = {line.split()[-1] for line in nm.splitlines()}
    assert "td_arena_store" in symbols and not {"td_in", "td_out"} & symbols


def test_planner_drops_a_pin_that_stacks_above_the_peak(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    """person_detect: input 9 KB, the first conv's 18 KB output pinned 9,313 B below it, the
    depthwise output pinned below that, the 1x1 conv's 36 KB output below that: placing
    every pair at its pin stacks the input above the 1x1 conv's peak (37,360 B); dropping
    the input's pin gives 37,263 B (0.45x TFLM's RAM)."""
    from dataclasses import replace

    from tinydeploy.cruntime import planner
    from tinydeploy.cruntime.memplan import _storage

    _, buffers = _storage(read_graph(load(DATA / "person_detect.tflite")))
    relaxed = planner.plan([replace(b) for b in buffers])
    monkeypatch.setattr(planner, "RELAX_ROUNDS", 0)
    stacked = planner.plan([replace(b) for b in buffers])
    assert stacked.size == 37360 and relaxed.size == 37263
    assert relaxed.lower_bound == stacked.lower_bound == 36871


FUSED = [("sine_mlp", "RELU", "FULLY_CONNECTED"), ("hello_world_int8", "RELU6", "FULLY_CONNECTED"),
         ("simple_add_model", "RELU", "ADD"),
         ("regressions/layout_conv_zero_weights", "RELU6", "CONV_2D")]


@needs_gcc
@pytest.mark.parametrize(("model", "act", "producer"), FUSED, ids=[f[0] for f in FUSED])
def test_fused_activation_bit_exact(model: str, act: str, producer: str,
                                    tmp_path: Path) -> None:
    facts = load(_append_quantize(load(DATA / f"{model}.tflite"), 0.0, 0, op_name=act))
    assert facts.op_names[-1] == act
    path = tmp_path / "fused.tflite"
    path.write_bytes(facts.data)
    res = generate_c(facts, tmp_path / "c", tflm_arena=False)
    mem = json.loads((res.out_dir / "memory.json").read_text())
    [f] = mem["fused_ops"]
    ops = read_graph(facts).ops
    assert f["name"] == act and ops[f["producer"]].name == producer and f["op"] == len(ops) - 1
    text = (res.out_dir / "td_model.c").read_text()
    assert f"/* {f['op']}: {act} */ /* fused into op {f['producer']} */" in text
    samples = _random_inputs(facts, 24, 9)
    ref = _tflm(facts, samples)
    outs = [(_shape(t), t.numpy_dtype) for t in facts.outputs]
    _assert_equal(run_harness_bytes(build_harness(res.out_dir), samples, outs, reset=True),
                  ref, "native")
    if HAS_QEMU:
        _assert_equal(_qemu_outputs(path, samples[:4], tmp_path / "q",
                                    [t.numpy_dtype for t in facts.outputs]), ref[:4], "qemu-cm4")


@needs_gcc
def test_patch_stage_bit_exact(tmp_path: Path) -> None:
    path = DATA / "person_detect.tflite"
    facts = load(path)
    res = generate_c(facts, tmp_path / "c", tflm_arena=False, patch=(0, 3, 12))
    mem = json.loads((res.out_dir / "memory.json").read_text())
    assert mem["patch"]["ops"] == [0, 3] and mem["patch"]["bands"] == 12
    assert mem["patch"]["chosen"] == "forced"
    unpatched = mem["ram_bytes"] + mem["patch"]["saved_bytes"]  # the default plan's RAM
    assert 36000 < unpatched < 38500 and mem["ram_bytes"] < 0.75 * unpatched  # 12 bands: -28 %
    assert mem["patch"]["recompute_macs_ratio"] == 1.0 and mem["patch"]["carried_bytes"] > 0
    assert "in 12 row bands" in (res.out_dir / "td_model.c").read_text()
    person_detect_bit_exact(res.out_dir, tmp_path / "q", (0, 3, 12), "in 12 row bands")


def person_detect_bit_exact(model_dir: Path, qemu_dir: Path, patch: Any, code: str) -> None:
    """person_detect's generated model in ``model_dir`` on the host build, and its qemu-cm4
    firmware built with ``patch`` (its td_model.c holding ``code``), against the stored
    Cortex-M4 outputs, bit for bit."""
    x = np.load(DATA / "person_detect.inputs.npy")
    want = np.load(DATA / "person_detect.outputs_cm4.npy")
    samples = [[x[i]] for i in range(len(x))]
    got = run_harness_bytes(build_harness(model_dir), samples,
                            [(tuple(want.shape[1:]), want.dtype)], reset=True)
    assert all(np.array_equal(g[0], want[i]) for i, g in enumerate(got))
    if HAS_QEMU:
        got = _qemu_outputs(DATA / "person_detect.tflite", samples[:3], qemu_dir, [want.dtype],
                            patch)
        assert all(np.array_equal(g[0], want[i].reshape(g[0].shape)) for i, g in enumerate(got))
        assert code in (qemu_dir / "model" / "td_model.c").read_text()


def test_patch_stage_refused_with_one_line() -> None:
    from tinydeploy.cruntime.codegen import build
    from tinydeploy.errors import TinyDeployError

    facts = load(DATA / "person_detect.tflite")
    with pytest.raises(TinyDeployError, match="op 29 RESHAPE cannot run in bands"):
        build(facts, patch=(27, 29, 4))
    with pytest.raises(TinyDeployError, match="not auto, off or FIRST_OP:LAST_OP:BANDS"):
        build(facts, patch="0-3")


def test_patch_option_on_the_command_line(tmp_path: Path) -> None:
    """``--patch F:L:B`` (generate / validate / deploy, C runtime): the bands reach the
    generated code and memory.json, validation stays bit-exact, and a TFLM build or a
    malformed value is one error line (exit 2)."""
    from tinydeploy.cli import main

    path = DATA / "digits_cnn.tflite"
    gen = tmp_path / "gen"
    assert main(["generate", str(path), "--runtime", "c", "--board", "native", "--patch",
                 "0:2:3", "--out", str(gen)]) == 0
    mem = json.loads(next(gen.rglob("memory.json")).read_text())
    assert mem["patch"]["ops"] == [0, 2] and mem["patch"]["bands"] == 3
    x = np.load(DATA / "digits_cnn.inputs.npy")
    np.savez(tmp_path / "d.npz", x_test=x)
    arena = {}
    for run, extra in (("plain", []), ("patched", ["--patch", "0:2:3"])):
        assert main(["validate", str(path), "--data", str(tmp_path / "d.npz"), "--board",
                     "native", *extra, "--out", str(tmp_path / run)]) == 0  # bit-exact
        doc = json.loads((tmp_path / run / "validation.json").read_text())
        arena[run] = doc["device"]["arena_size"]
    # the firmware ran the banded plan (on this small CNN it costs 228 B: memory.json says so)
    assert arena["patched"] == arena["plain"] - mem["patch"]["saved_bytes"] != arena["plain"]
    assert main(["generate", str(path), "--board", "nano33ble", "--patch", "0:2:3",
                 "--out", str(tmp_path / "t")]) == 2  # TFLM firmware: refused
    assert main(["generate", str(path), "--runtime", "c", "--patch", "0-2",
                 "--out", str(tmp_path / "m")]) == 2
    assert not (tmp_path / "t").exists() and not (tmp_path / "m").exists()
