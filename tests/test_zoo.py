"""The public model zoo (tests/models.py ZOO): every model passes ``check`` with the right
facts and runs in the interpreter-free C runtime bit-exactly against the Cortex-M4 ground
truth (``outputs_cm4``), natively (host gcc) and as qemu-cm4 firmware.

trained_lstm_int8 holds state: ``outputs_cm4`` was measured with TFLM's Reset() before every
Invoke() (td_reset() here), ``outputs_cm4_stateful`` with the 16 inputs as one sequence
(a freshly started program/firmware, no reset).
"""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import numpy as np
import pytest
from models import DATA, GROUND_TRUTH, ZOO

from tinydeploy.cruntime import generate_c
from tinydeploy.cruntime.harness import build_harness, run_harness_bytes
from tinydeploy.facts import ModelFacts, load
from tinydeploy.guard import check

SCHEME = {"seanet_conv0": "16x8", "seanet_add0": "16x8"}  # the others are full int8
STATEFUL = {"trained_lstm_int8"}


def _inputs(name: str) -> list[np.ndarray]:
    """The stored inputs, one array per model input ([16, ...] each)."""
    single = DATA / f"{name}.inputs.npy"
    if single.is_file():
        return [np.load(single)]
    return [np.load(p) for p in sorted(DATA.glob(f"{name}.inputs_*.npy"))]


def _samples(facts: ModelFacts, xs: list[np.ndarray]) -> list[list[np.ndarray]]:
    for x, t in zip(xs, facts.inputs, strict=True):
        assert x.dtype == np.dtype(t.numpy_dtype) and x.shape[1:] == t.shape[1:]
    return [[x[k] for x in xs] for k in range(len(xs[0]))]


def _outputs(facts: ModelFacts) -> list[tuple[tuple[int, ...], str]]:
    return [(t.shape[1:], t.numpy_dtype) for t in facts.outputs]


def test_zoo_is_nine_public_models() -> None:
    assert len(ZOO) == 9 and all("source" in GROUND_TRUTH[n] for n in ZOO)


@pytest.mark.parametrize("name", ZOO)
def test_check_accepts_with_facts(name: str) -> None:
    facts = check(DATA / f"{name}.tflite")
    assert facts.op_names == GROUND_TRUTH[name]["ops"]
    assert facts.quantization == SCHEME.get(name, "int8")
    assert facts.stateful == (name in STATEFUL)
    if name in STATEFUL:  # hidden (int8) and cell (int16) state; 5 float placeholders
        assert sorted(t.dtype for t in facts.variables) == ["INT16", "INT8"]
        assert len(facts.placeholders) == 5
        d = facts.to_dict()
        assert d["stateful"] is True and len(d["variables"]) == 2


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[ModelFacts, Path]]:
    root = tmp_path_factory.mktemp("zoo")
    out = {}
    for name in ZOO:
        facts = load(DATA / f"{name}.tflite")
        res = generate_c(facts, root / name, tflm_arena=False)
        out[name] = (facts, build_harness(res.out_dir))
    return out


@pytest.mark.parametrize("name", ZOO)
def test_native_c_runtime_is_bit_exact_with_cm4(name: str, native: dict) -> None:
    facts, binary = native[name]
    samples = _samples(facts, _inputs(name))
    got = run_harness_bytes(binary, samples, _outputs(facts), reset=True)
    cm4 = np.load(DATA / f"{name}.outputs_cm4.npy")
    y = np.stack([row[0] for row in got])
    assert y.dtype == cm4.dtype
    np.testing.assert_array_equal(y.reshape(cm4.shape), cm4)
    if name in STATEFUL:  # one sequence from a fresh start: the state carries over
        seq = run_harness_bytes(binary, samples, _outputs(facts), reset=False)
        stateful = np.load(DATA / f"{name}.outputs_cm4_stateful.npy")
        y2 = np.stack([row[0] for row in seq]).reshape(stateful.shape)
        np.testing.assert_array_equal(y2, stateful)
        assert not np.array_equal(y2, cm4)  # the state matters


def test_generated_header_describes_every_tensor(native: dict) -> None:
    facts, binary = native["seanet_add0"]
    header = (binary.parent / "td_model.h").read_text()
    assert "#define TD_NUM_INPUTS 2" in header and "#define TD_INPUT_BYTES 1280" in header
    assert "#define TD_INPUT1_OFFSET 640" in header and "#define TD_INPUT1_BYTES 640" in header
    assert "#define TD_OUTPUT0_DTYPE TD_DTYPE_INT16" in header
    assert "void td_reset(void);" in header and "TD_HAS_RESET 1" in header
    assert "#define TD_MODEL_STATEFUL 0" in header
    lstm = (native["trained_lstm_int8"][1].parent / "td_model.h").read_text()
    assert "#define TD_MODEL_STATEFUL 1" in lstm


# --- qemu-cm4 -----------------------------------------------------------------------------
QEMU_TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm")


def _protocol_v2() -> bool:
    from tinydeploy.resources import firmware_dir

    return "TD_OP_DATA" in (firmware_dir() / "td_protocol.h").read_text()


@pytest.mark.parametrize("name", ZOO)
def test_qemu_cm4_is_bit_exact_with_cm4(name: str, tmp_path: Path) -> None:
    missing = [t for t in QEMU_TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install gcc-arm-none-eabi "
                    "libnewlib-arm-none-eabi qemu-system-arm)")
    facts = load(DATA / f"{name}.tflite")
    if len(facts.inputs) > 1 and not _protocol_v2():
        pytest.skip("several input tensors need the chunked protocol v2 (TD_OP_DATA in "
                    "firmware/td_protocol.h); checked natively above")
    from tinydeploy.device.link import Link
    from tinydeploy.device.qemu import start_qemu

    samples = _samples(facts, _inputs(name))
    cm4 = np.load(DATA / f"{name}.outputs_cm4.npy")
    want = np.load(DATA / f"{name}.outputs_cm4_stateful.npy") if name in STATEFUL else cm4
    # CI time: 4 samples of the slow ones (simple_add_model: 48 kB over the emulated UART per
    # sample); all 16 run natively above
    slow = ("person_detect", "ad01_int8", "seanet_conv0", "simple_add_model")
    n = 4 if name in slow else len(samples)
    resettable = "reset" in inspect.signature(Link.infer).parameters  # protocol v2

    def run(link: Link, reset: bool) -> np.ndarray:
        blobs = [b"".join(t.tobytes() for t in s) for s in samples[:n]]
        if resettable:  # reset before each sample, or only before the first (a sequence)
            replies = [link.infer(b, reset=reset or k == 0) for k, b in enumerate(blobs)]
        else:  # a freshly booted firmware: a stateful model runs one sequence
            replies = [link.infer(b) for b in blobs]
        got = [np.frombuffer(r.output, dtype=cm4.dtype) for r in replies]
        return np.stack(got).reshape((n, *cm4.shape[1:]))

    # a generous base timeout: person_detect takes a few emulated seconds on a busy host
    with start_qemu(facts, tmp_path / "fw") as proc, Link(proc.port, timeout=15.0) as link:
        assert link.hello().model_sha256 == facts.sha256
        np.testing.assert_array_equal(run(link, reset=False), want[:n])
        if resettable and name in STATEFUL:  # TFLM's Reset() before every Invoke()
            np.testing.assert_array_equal(run(link, reset=True), cm4[:n])


@pytest.mark.parametrize("name", ["trained_lstm_int8", "seanet_add0"])
def test_strict_compile_of_extension_kernels(name: str, tmp_path: Path) -> None:
    from tinydeploy.cruntime.harness import STRICT_FLAGS, compile_c

    res = generate_c(DATA / f"{name}.tflite", tmp_path / "c", tflm_arena=False)
    flags = (*STRICT_FLAGS, "-Wconversion", "-Wshadow", "-c")
    for src in res.sources:
        compile_c([src], tmp_path / (src.stem + ".o"), [res.out_dir], flags=flags)
