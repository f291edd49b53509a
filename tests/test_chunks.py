"""Protocol v2 end to end: inputs/outputs larger than one frame (chunked DATA/INFER/READ),
models with several inputs/outputs and int16 tensors, on the simulated board (TFLM Python
runtime) and the native board (the C runtime + td_protocol.c), with fault injection."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tinydeploy.device.link import Link
from tinydeploy.device.protocol import ErrorCode, Frame, FrameDecoder, Op, encode_frame
from tinydeploy.device.sim import Faults, SimDevice, start_sim
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import ModelFacts, load
from tinydeploy.hostref_native import reference_model

DATA = Path(__file__).parent / "data"
GCC = shutil.which("gcc")
needs_gcc = pytest.mark.skipif(GCC is None, reason="gcc not installed")


def pool_model(shape: tuple[int, ...] = (1, 96, 96, 3), pool: int = 2) -> bytes:
    """A one-operator int8 model (MAX_POOL_2D pool x pool, stride pool): a 96x96x3 input is
    27,648 bytes (MLPerf Tiny VWW size), its output 6,912 bytes."""
    import flatbuffers

    from tinydeploy.tflm_py import schema

    def tensor(name: bytes, dims: list[int], buf: int) -> schema.TensorT:
        t = schema.TensorT()
        t.name, t.shape, t.type, t.buffer = name, dims, schema.TensorType.INT8, buf
        q = schema.QuantizationParametersT()
        q.scale, q.zeroPoint = [0.02], [-5]
        t.quantization = q
        return t

    out_shape = [shape[0], shape[1] // pool, shape[2] // pool, shape[3]]
    sub = schema.SubGraphT()
    sub.tensors = [tensor(b"image", list(shape), 1), tensor(b"pooled", out_shape, 2)]
    sub.inputs, sub.outputs = [0], [1]
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    op.builtinOptionsType = schema.BuiltinOptions.Pool2DOptions
    opts = schema.Pool2DOptionsT()
    opts.padding = schema.Padding.VALID
    opts.strideW = opts.strideH = opts.filterWidth = opts.filterHeight = pool
    op.builtinOptions = opts
    sub.operators = [op]
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.MAX_POOL_2D
    code.version = 1
    model = schema.ModelT()
    model.version, model.description = 3, b"tinydeploy chunk test"
    model.operatorCodes, model.subgraphs = [code], [sub]
    model.buffers = [schema.BufferT() for _ in range(3)]
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


@pytest.fixture(scope="module")
def big() -> tuple[ModelFacts, np.ndarray, np.ndarray]:
    facts = load(pool_model())
    x = np.random.default_rng(5).integers(-128, 128, size=(3, 96, 96, 3), dtype=np.int8)
    y = reference_model(facts).predict(x)
    return facts, x, y


def _infer_all(link: Link, xs: list[np.ndarray], out_dtypes: list[str]) -> list[np.ndarray]:
    """Send sample i of every input (concatenated bytes); split each reply per output."""
    outs: list[list[np.ndarray]] = [[] for _ in out_dtypes]
    info = link.info or link.hello()
    for i in range(len(xs[0])):
        reply = link.infer(b"".join(x[i].tobytes() for x in xs))
        off = 0
        for k, (t, dt) in enumerate(zip(info.outputs, out_dtypes, strict=True)):
            outs[k].append(np.frombuffer(reply.output, dtype=dt, count=t.nbytes
                                         // np.dtype(dt).itemsize, offset=off))
            off += t.nbytes
        assert off == len(reply.output)
    return [np.stack(o) for o in outs]


def test_27648_byte_input_on_sim(big: tuple[ModelFacts, np.ndarray, np.ndarray]) -> None:
    facts, x, y = big
    with start_sim(facts) as sim, Link(sim.port, timeout=1.0) as link:
        info = link.hello()
        assert info.input_bytes == 27_648 and info.output_bytes == 6_912
        assert info.max_payload == 1024  # frames stay bounded: the input takes 28 of them
        sent = link.bytes_sent
        (out,) = _infer_all(link, [x], ["int8"])
        ratio = 3 * 27_648 / (link.bytes_sent - sent)
        sim.stop()
        stats = sim.stats()
    np.testing.assert_array_equal(out, y.reshape(3, -1))
    assert stats["invocations"] == 3
    assert ratio >= 0.95, ratio  # chunk headers and acknowledgements cost < 5 %


@needs_gcc
def test_27648_byte_input_on_native(big: tuple[ModelFacts, np.ndarray, np.ndarray],
                                    tmp_path: Path) -> None:
    from tinydeploy.device.native import start_native

    facts, x, y = big
    with start_native(facts, tmp_path / "dev") as proc, Link(proc.port, timeout=2.0) as link:
        info = link.hello()
        assert info.runtime == "c" and info.input_bytes == 27_648
        assert info.max_payload == 1024
        (out,) = _infer_all(link, [x], ["int8"])
    np.testing.assert_array_equal(out, y.reshape(3, -1))


def test_chunks_survive_corruption_drops_and_a_reset(
        big: tuple[ModelFacts, np.ndarray, np.ndarray]) -> None:
    """Small frames (many chunks each way), damaged and lost bytes, a reboot mid-run: every
    sample is delivered exactly once and bit-exact."""
    from tinydeploy.device.link import DeviceReset

    facts = load(pool_model((1, 24, 24, 3)))  # 1,728 B in, 432 B out: 16 + 4 chunks
    x = np.random.default_rng(9).integers(-128, 128, size=(6, 24, 24, 3), dtype=np.int8)
    y = reference_model(facts).predict(x).reshape(len(x), -1)
    outs, resets = [], 0
    with start_sim(facts, corrupt=0.001, drop=0.001, reset_after=3, seed=4,
                   max_payload=128) as sim, Link(sim.port, timeout=0.3, retries=8) as link:
        assert link.hello().max_payload == 128
        i = 0
        while i < len(x):
            try:
                outs.append(np.frombuffer(link.infer(x[i].tobytes()).output, np.int8))
            except DeviceReset:
                resets += 1
                continue
            i += 1
        sim.stop()
        stats = sim.stats()
    np.testing.assert_array_equal(np.stack(outs), y)
    assert stats["resets"] == 1 and stats["invocations"] == len(x)
    assert link.retransmits > 0


class _LostAnnouncement:
    """A simulated board on a pty whose boot announcement after a reboot is lost, so the
    host does not notice the reset: the retried INFER meets an empty input buffer."""

    def __init__(self, facts: ModelFacts) -> None:
        from test_link_sim import PtyBoard

        self.device = SimDevice(facts, Faults(reset_after=1), max_payload=256)
        self.board = PtyBoard(self.respond)

    def respond(self, data: bytes) -> list[bytes | float]:
        return [r for r in self.device.feed(data) if not r.startswith(b"\x00")]


def test_unnoticed_reset_resends_the_chunks() -> None:
    facts = load(pool_model((1, 16, 16, 3)))  # 768 B: 4 chunks of 244
    x = np.random.default_rng(2).integers(-128, 128, size=(3, 16, 16, 3), dtype=np.int8)
    y = reference_model(facts).predict(x).reshape(len(x), -1)
    board = _LostAnnouncement(facts)
    with board.board, Link(board.board.port, timeout=0.3, boot_wait=0.0) as link:
        out = np.stack([np.frombuffer(link.infer(s.tobytes()).output, np.int8) for s in x])
    np.testing.assert_array_equal(out, y)
    assert board.device.stats.resets == 1 and link.resets == 0
    assert board.device.stats.invocations == len(x)


class _ForgetsResult(_LostAnnouncement):
    """Reboots silently right after its first RESULT: the READ that follows meets no result."""

    def __init__(self, facts: ModelFacts) -> None:
        from test_link_sim import PtyBoard

        self.device = SimDevice(facts, max_payload=128)
        self.dropped = False
        self.board = PtyBoard(self.respond)

    def respond(self, data: bytes) -> list[bytes | float]:
        if not self.dropped and self.device.head is not None:
            self.device.reboot()  # its announcement is dropped below
            self.dropped = True
        return super().respond(data)


@pytest.mark.parametrize("reset", [True, False], ids=["fresh", "stateful"])
def test_lost_result_resends_or_stops_a_stateful_sequence(reset: bool) -> None:
    facts = load(pool_model((1, 16, 16, 3)))  # 192 output bytes: RESULT + READ at 128
    x = np.random.default_rng(1).integers(-128, 128, size=(16, 16, 3), dtype=np.int8)
    board = _ForgetsResult(facts)
    with board.board, Link(board.board.port, timeout=0.3, boot_wait=0.0) as link:
        if reset:
            out = link.infer(x.tobytes(), reset=True).output
            assert out == reference_model(facts).predict(x[None]).tobytes()
            assert board.device.stats.invocations == 2  # run again after the lost result
        else:
            with pytest.raises(TinyDeployError, match="stateful step"):
                link.infer(x.tobytes(), reset=False)


def test_device_refuses_bad_chunks() -> None:
    """DATA past the end, an INFER whose CRC does not match, READ without a result."""
    from tinydeploy.device.protocol import (
        crc32,
        pack_chunk,
        pack_infer,
        pack_span,
        unpack_error,
    )

    facts = load(pool_model((1, 16, 16, 3)))
    dev = SimDevice(facts, max_payload=256)
    dec = FrameDecoder(0xFFFF)

    def ask(op: int, payload: bytes) -> Frame:
        (reply,) = dec.feed(b"".join(dev.feed(encode_frame(op, 7, payload))))
        assert isinstance(reply, Frame)
        return reply

    def error(op: int, payload: bytes) -> int:
        reply = ask(op, payload)
        assert reply.op == Op.ERROR
        return unpack_error(reply.payload)[0]

    assert error(Op.DATA, pack_chunk(760, bytes(9))) == ErrorCode.BAD_OFFSET
    assert error(Op.INFER, pack_infer(1, 0, 12345)) == ErrorCode.INPUT_CRC
    assert error(Op.READ, pack_span(0, 10)) == ErrorCode.NO_RESULT
    assert error(Op.DATA, b"\x00") == ErrorCode.BAD_LENGTH
    assert ask(Op.INFER, pack_infer(1, 0, crc32(bytes(768)))).op == Op.RESULT
    assert ask(Op.READ, pack_span(0, 10)).op == Op.OUTPUT


# --- reference models: person_detect (9,216 B), two inputs, int16 -------------------------
def _zoo(name: str) -> tuple[ModelFacts, list[np.ndarray], np.ndarray]:
    facts = load(DATA / f"{name}.tflite")
    if len(facts.inputs) == 1:
        xs = [np.load(DATA / f"{name}.inputs.npy")]
    else:
        xs = [np.load(DATA / f"{name}.inputs_{k}.npy") for k in range(len(facts.inputs))]
    return facts, xs, np.load(DATA / f"{name}.outputs_cm4.npy")


@pytest.fixture(scope="module")
def person() -> Iterator[tuple[ModelFacts, list[np.ndarray], np.ndarray]]:
    facts, xs, y = _zoo("person_detect")
    yield facts, [xs[0][:2]], y[:2]


def test_person_detect_on_sim_matches_cortex_m4(
        person: tuple[ModelFacts, list[np.ndarray], np.ndarray]) -> None:
    facts, xs, y = person
    with start_sim(facts) as sim, Link(sim.port, timeout=2.0) as link:
        assert link.hello().input_bytes == 9_216
        (out,) = _infer_all(link, xs, ["int8"])
    np.testing.assert_array_equal(out, y.reshape(len(y), -1))


@needs_gcc
def test_person_detect_on_native_matches_cortex_m4(
        person: tuple[ModelFacts, list[np.ndarray], np.ndarray], tmp_path: Path) -> None:
    from tinydeploy.device.native import start_native

    facts, xs, y = person
    with start_native(facts, tmp_path / "dev") as proc, Link(proc.port, timeout=5.0) as link:
        assert link.hello().input_bytes == 9_216
        (out,) = _infer_all(link, xs, ["int8"])
    np.testing.assert_array_equal(out, y.reshape(len(y), -1))


@pytest.mark.skipif(any(shutil.which(t) is None for t in ("arm-none-eabi-gcc", "qemu-system-arm")),
                    reason="arm-none-eabi-gcc or qemu-system-arm not installed")
def test_person_detect_on_qemu_cm4_matches_cortex_m4(
        person: tuple[ModelFacts, list[np.ndarray], np.ndarray], tmp_path: Path) -> None:
    """9,216 input bytes in 10 chunks into the firmware's input buffer (TD_MAX_PAYLOAD
    1024); the same outputs as TFLM on the Cortex-M4."""
    from tinydeploy.device.qemu import start_qemu

    facts, xs, y = person
    with start_qemu(facts, tmp_path / "dev") as proc, Link(proc.port, timeout=20.0) as link:
        info = link.hello()
        assert info.max_payload == 1024 and info.input_bytes == 9_216
        (out,) = _infer_all(link, [xs[0][:1]], ["int8"])
    np.testing.assert_array_equal(out, y[:1].reshape(1, -1))


def test_old_firmware_is_refused_with_a_clear_message() -> None:
    """A protocol-1 device (INFO byte 0 = 1, another layout) is refused at HELLO."""
    from test_link_sim import PtyBoard

    decoder = FrameDecoder()
    old_info = bytes([1, 0, 0, 0]) + bytes(150)

    def respond(data: bytes) -> list[bytes | float]:
        return [encode_frame(Op.INFO, f.seq, old_info) for f in decoder.feed(data)
                if isinstance(f, Frame)]

    with PtyBoard(respond) as board, Link(board.port, timeout=0.5) as link, \
            pytest.raises(TinyDeployError) as err:
        link.hello()
    assert err.value.code == "protocol_error"
    assert "speaks protocol 1, this tinydeploy speaks 2" in str(err.value)
    assert "reflash" in str(err.value)


def test_two_input_model_on_sim() -> None:
    facts, xs, y = _zoo("simple_add_model")
    with start_sim(facts) as sim, Link(sim.port, timeout=2.0) as link:
        info = link.hello()
        assert len(info.inputs) == 2 and info.input_bytes == sum(t.nbytes for t in facts.inputs)
        for dev, host in zip(info.inputs, facts.inputs, strict=True):
            assert (dev.dtype, dev.shape, dev.zero_point) == (host.dtype, host.shape,
                                                               host.zero_point)
        (out,) = _infer_all(link, [x[:4] for x in xs], [facts.outputs[0].numpy_dtype])
    np.testing.assert_array_equal(out, y[:4].reshape(4, -1))


@needs_gcc
def test_two_input_model_on_native(tmp_path: Path) -> None:
    from tinydeploy.device.native import start_native

    facts, xs, y = _zoo("simple_add_model")
    try:
        proc = start_native(facts, tmp_path / "dev")
    except TinyDeployError as exc:
        if exc.code in ("model_rejected", "unsupported_op"):
            pytest.skip(f"the C runtime does not serve this model yet: {exc.message}")
        raise
    with proc, Link(proc.port, timeout=2.0) as link:
        assert len(link.hello().inputs) == 2
        (out,) = _infer_all(link, xs, [facts.outputs[0].numpy_dtype])
    np.testing.assert_array_equal(out, y.reshape(len(y), -1))


def test_int16_model_on_sim() -> None:
    facts, xs, y = _zoo("seanet_conv0")
    assert facts.inputs[0].dtype == "INT16" and facts.outputs[0].dtype == "INT16"
    with start_sim(facts) as sim, Link(sim.port, timeout=2.0) as link:
        info = link.hello()
        assert info.input.dtype == "INT16" and info.output.dtype == "INT16"
        (out,) = _infer_all(link, [xs[0][:4]], ["int16"])
    np.testing.assert_array_equal(out, y[:4].reshape(4, -1))


STATEFUL_MODEL = r"""
#include "td_model_api.h"
static int8_t state;
void td_model_describe(td_info *info) {
  info->input.dtype = TD_DTYPE_INT16;
  info->input.ndims = 1;
  info->input.dims[0] = 700; /* 1,400 bytes: two chunks at TD_MAX_PAYLOAD 1024 */
  info->output = info->input;
  info->output.dtype = TD_DTYPE_INT8;
  info->output.dims[0] = 2;
}
void td_reset(void) { state = 0; }
/* out[0] = how many runs since the last reset, out[1] = the input's last byte */
int td_invoke(const int8_t *in, int8_t *out) {
  out[0] = ++state;
  out[1] = in[1399];
  return 0;
}
"""


@needs_gcc
def test_native_reset_flag_reaches_td_reset(tmp_path: Path) -> None:
    """INFER's reset flag calls td_reset() (built with -DTD_HAS_RESET, as model_flags()
    asks when td_model.h declares it) before the run; without it the state carries on."""
    import subprocess

    from tinydeploy.device.native import model_flags
    from tinydeploy.device.ptyproc import read_pty_line

    fw = Path(__file__).resolve().parents[1] / "firmware"
    (tmp_path / "td_model.h").write_text('#include "td_model_api.h"\nvoid td_reset(void);\n')
    assert model_flags(tmp_path) == ["-DTD_HAS_RESET=1"]
    (tmp_path / "model.c").write_text(STATEFUL_MODEL)
    exe = tmp_path / "device"
    res = subprocess.run([str(GCC), "-std=c99", "-Wall", "-Wextra", "-Werror",
                          *model_flags(tmp_path), "-I", str(fw),
                          *(str(fw / f) for f in ("td_native_main.c", "td_posix.c",
                                                  "td_protocol.c")),
                          str(tmp_path / "model.c"), "-o", str(exe)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    proc = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        port = read_pty_line(proc, 10.0)
        with Link(port, timeout=1.0) as link:
            assert link.hello().input.dtype == "INT16"
            x = bytes(range(256)) * 5 + bytes(120)
            steps = [link.infer(x, reset=r).output[0] for r in (True, False, False, True)]
            assert steps == [1, 2, 3, 1]
            assert link.infer(x[:-1] + b"\x07", reset=False).output == b"\x02\x07"
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        assert proc.stdout is not None
        proc.stdout.close()
