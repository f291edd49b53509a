"""Link against real pseudo-terminals: the C core (td_native_main.c with a fake model) and
the simulated board (tinydeploy.device.sim) with fault injection."""

from __future__ import annotations

import contextlib
import logging
import os
import pty
import select
import shutil
import subprocess
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tinydeploy.device.link import DeviceReset, Link
from tinydeploy.device.protocol import (
    INFER_RESET,
    INFO_FLAG_BOOT,
    PROTOCOL_VERSION,
    RESULT_HEADER,
    DeviceInfo,
    ErrorCode,
    Frame,
    FrameDecoder,
    Op,
    ResultHead,
    TensorInfo,
    cobs_encode,
    crc32,
    encode_frame,
    frame_bytes,
    pack_error,
    pack_infer,
    pack_info,
    pack_result,
    unpack_error,
    unpack_infer,
)
from tinydeploy.device.ptyproc import read_pty_line
from tinydeploy.device.sim import Faults, SimDevice, start_sim
from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load
from tinydeploy.hostref_native import reference_model
from tinydeploy.log import log

ROOT = Path(__file__).resolve().parents[1]
FW = ROOT / "firmware"
DATA = Path(__file__).resolve().parent / "data"
MODEL = DATA / "digits_cnn.tflite"
GCC = shutil.which("gcc")

FAKE_MODEL = r"""
#include <string.h>
#include "td_model_api.h"
#define N 1024
static int calls;
void td_model_describe(td_info *info) {
  int i;
  for (i = 0; i < 32; i++) info->model_sha256[i] = (uint8_t)i;
  info->input.dtype = TD_DTYPE_INT8;
  info->input.ndims = 2;
  info->input.dims[0] = 1;
  info->input.dims[1] = N;
  info->input.scale = 0.5f;
  info->input.zero_point = -3;
  info->output = info->input;
  info->output.scale = 0.25f;
  info->output.zero_point = 7;
  info->arena_size = 2048;
  info->arena_used = 1500;
  info->runtime = "c";
}
/* out = in + 1, except out[0] counts the model runs (to see cached replies) */
int td_invoke(const int8_t *in, int8_t *out) {
  int i;
  for (i = 0; i < N; i++) out[i] = (int8_t)(uint8_t)((uint8_t)in[i] + 1u);
  out[0] = (int8_t)++calls;
  return 0;
}
"""


# --- the C core on a pty ------------------------------------------------------------------
@pytest.fixture(scope="module")
def native_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if GCC is None:
        pytest.skip("gcc not installed")
    tmp = tmp_path_factory.mktemp("native")
    (tmp / "fake_model.c").write_text(FAKE_MODEL)
    exe = tmp / "device"
    cmd = [GCC, "-std=c99", "-Wall", "-Wextra", "-Werror", "-DTD_MAX_PAYLOAD=2048", "-I", str(FW),
           str(FW / "td_native_main.c"), str(FW / "td_posix.c"), str(FW / "td_protocol.c"),
           str(tmp / "fake_model.c"), "-o", str(exe)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    proc = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        port = read_pty_line(proc, 10.0)
        assert port and port.startswith("/dev/")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        assert proc.stdout is not None
        proc.stdout.close()


def test_native_hello_fields(native_port: str) -> None:
    with Link(native_port, timeout=1.0) as link:
        info = link.hello()
    assert info.protocol_version == PROTOCOL_VERSION
    assert info.board_id == "native" and info.runtime == "c"
    assert info.firmware_version.startswith("tinydeploy-native")
    assert info.model_sha256 == bytes(range(32)).hex()
    assert info.input.dtype == "INT8" and info.input.shape == (1, 1024)
    assert (info.input.scale, info.input.zero_point) == (0.5, -3)
    assert (info.output.scale, info.output.zero_point) == (0.25, 7)
    assert (info.arena_size, info.arena_used) == (2048, 1500)
    assert info.max_payload == 2048  # -DTD_MAX_PAYLOAD: the 1 KB tensors take one frame


def test_native_infer_and_wire_efficiency(native_port: str) -> None:
    rng = np.random.default_rng(0)
    with Link(native_port, timeout=1.0) as link:
        link.hello()
        for _ in range(3):
            x = rng.integers(-128, 128, 1024, dtype=np.int8)
            sent, received = link.bytes_sent, link.bytes_received
            reply = link.infer(x.tobytes())
            y = np.frombuffer(reply.output, dtype=np.int8)
            np.testing.assert_array_equal(y[1:], (x[1:].astype(np.int16) + 1).astype(np.int8))
            assert reply.cycles == 0 and reply.time_us < 1_000_000
            # payload / bytes on the wire, both directions, measured on the real stream
            assert 1024 / (link.bytes_sent - sent) >= 0.95
            assert 1024 / (link.bytes_received - received) >= 0.95


def test_native_retry_is_answered_from_cache(native_port: str) -> None:
    x = bytes(range(256)) * 4
    with Link(native_port, timeout=1.0) as link:
        link.hello()
        first = link.infer(x).output[0]
        payload = pack_infer(INFER_RESET, 0, crc32(x), x)
        wire = b"\x00" + cobs_encode(frame_bytes(Op.INFER, 4242, payload)) + b"\x00"
        replies = []
        for _ in range(2):  # the same seq twice: the second is a retry
            link._write(wire)
            replies.append(_wait_frame(link, 4242))
        again = link.infer(x).output[0]
    assert replies[0] == replies[1]
    assert replies[0].payload[RESULT_HEADER] == (first + 1) % 256
    assert again == (first + 2) % 256


def _wait_frame(link: Link, seq: int) -> Frame:
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        for item in link._read():
            if isinstance(item, Frame) and item.seq == seq:
                return item
    raise AssertionError(f"no reply for seq {seq}")


def test_native_oversized_frame_is_too_large(native_port: str) -> None:
    with Link(native_port, timeout=1.0) as link:
        link.hello()
        frame = link.command(Op.INFER, bytes(5000))
        with pytest.raises(TinyDeployError) as exc:
            link.check(frame, Op.RESULT)
        assert exc.value.code == "protocol_error" and "TOO_LARGE" in str(exc.value)
        frame = link.command(Op.INFER, bytes(10))
        assert unpack_error(frame.payload)[0] == ErrorCode.BAD_LENGTH
        frame = link.command(0x33, b"")
        assert unpack_error(frame.payload)[0] == ErrorCode.BAD_COMMAND
        with pytest.raises(TinyDeployError, match="bad_argument|input is 10 bytes"):
            link.infer(bytes(10))


def test_native_bad_crc_is_answered_with_error(native_port: str) -> None:
    with Link(native_port, timeout=1.0) as link:
        link.hello()
        raw = bytearray(frame_bytes(Op.HELLO, 777, b""))
        raw[-1] ^= 0x5A
        link._write(b"\x00" + cobs_encode(bytes(raw)) + b"\x00")
        reply = _wait_frame(link, 777)
        assert reply.op == Op.ERROR
        assert unpack_error(reply.payload)[0] == ErrorCode.BAD_CRC
        assert link.hello().board_id == "native"  # still in sync


# --- the simulated board --------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference() -> tuple[np.ndarray, np.ndarray]:
    x = np.load(DATA / "digits_cnn.inputs.npy")
    y = reference_model(load(MODEL)).predict(x).reshape(len(x), -1)
    return x, y


def _run_all(link: Link, x: np.ndarray) -> tuple[np.ndarray, int]:
    """The validate-style caller loop: resume from the last confirmed sample on a reset."""
    outs, resets, i = [], 0, 0
    while i < len(x):
        try:
            outs.append(np.frombuffer(link.infer(x[i].tobytes()).output, dtype=np.int8))
        except DeviceReset:
            resets += 1
            continue
        i += 1
    return np.stack(outs), resets


def test_sim_matches_host_model(reference: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = reference
    facts = load(MODEL)
    with start_sim(MODEL) as sim, Link(sim.port, timeout=1.0) as link:
        info = link.hello()
        out, resets = _run_all(link, x)
        sim.stop()
        stats = sim.stats()
    assert info.runtime == "sim" and info.board_id == "sim"
    assert info.model_sha256 == facts.sha256
    assert info.input.shape == facts.inputs[0].shape and info.input.dtype == "INT8"
    assert info.output.zero_point == facts.outputs[0].zero_point
    assert info.arena_used > 0
    np.testing.assert_array_equal(out, y)
    assert resets == 0 and stats["invocations"] == len(x)


def test_sim_faults_deliver_every_inference_once(reference: tuple[np.ndarray, np.ndarray]
                                                 ) -> None:
    x, y = reference
    with start_sim(MODEL, corrupt=0.002, drop=0.002, split=True, delay=0.005, reset_after=6,
                   seed=11) as sim, Link(sim.port, timeout=0.3, retries=8) as link:
        link.hello()
        out, _ = _run_all(link, x)
        sim.stop()
        stats = sim.stats()
    np.testing.assert_array_equal(out, y)
    assert stats["resets"] == 1
    assert stats["invocations"] == len(x)  # retries were answered from the cache
    assert link.retransmits > 0 and stats["errors_sent"] + stats["cached_replies"] > 0


def test_sim_reset_raises_device_reset(reference: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = reference
    with start_sim(MODEL, reset_after=4) as sim, Link(sim.port, timeout=0.5) as link:
        link.hello()
        out, resets = _run_all(link, x[:8])
        sim.stop()
        stats = sim.stats()
    np.testing.assert_array_equal(out, y[:8])
    assert resets == 1 and link.resets == 1 and stats["resets"] == 1
    assert stats["invocations"] == 8


def test_sim_slow_replies(reference: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = reference
    with start_sim(MODEL, delay=0.35) as sim, Link(sim.port, timeout=0.2, retries=6) as link:
        link.hello()
        out, _ = _run_all(link, x[:3])
        sim.stop()
        stats = sim.stats()
    np.testing.assert_array_equal(out, y[:3])
    assert stats["invocations"] == 3 and stats["cached_replies"] >= 1


def test_sim_wrong_outputs_are_one_lsb(reference: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = reference
    with start_sim(MODEL, wrong_outputs=0.5, seed=3) as sim, Link(sim.port, timeout=1.0) as link:
        out, _ = _run_all(link, x)
        sim.stop()
        stats = sim.stats()
    diff = out.astype(np.int16) - y.astype(np.int16)
    bad = sorted(int(i) for i in np.flatnonzero(np.any(diff != 0, axis=1)))
    assert bad == stats["wrong"] and 0 < len(bad) < len(x)
    assert np.all(np.abs(diff).sum(axis=1)[bad] == 1)


@contextlib.contextmanager
def _logged() -> Iterator[list[str]]:
    """The messages logged (at INFO and up) inside the block."""
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler, old_level = Collect(), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield records
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)


def test_trace_logs_hex_dump(reference: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = reference
    with _logged() as records, start_sim(MODEL) as sim, \
            Link(sim.port, timeout=1.0, trace=True) as link:
        link.hello()
        link.infer(x[0].tobytes())
    tx = [r for r in records if r.startswith("trace TX INFER")]
    rx = [r for r in records if r.startswith("trace RX RESULT")]
    assert tx and rx
    assert "0000  02 " in tx[0]  # hex dump of the raw frame: op INFER first
    assert "0000  82 " in rx[0]


def test_link_timeout_and_bad_port(tmp_path: Path) -> None:
    with pytest.raises(TinyDeployError) as exc:
        Link(str(tmp_path / "nope"))
    assert exc.value.code == "port_error"
    master, slave = pty.openpty()  # nobody answers
    try:
        with Link(os.ttyname(slave), timeout=0.05, retries=2, boot_wait=0.0) as link, \
                pytest.raises(TinyDeployError) as exc:
            link.hello()
        assert exc.value.code == "device_timeout" and link.retransmits == 2
    finally:
        os.close(master)
        os.close(slave)


def test_port_vanishing_reopens_and_raises_device_reset(
        reference: tuple[np.ndarray, np.ndarray]) -> None:
    import serial

    x, y = reference
    with start_sim(MODEL) as sim, Link(sim.port, timeout=0.5) as link:
        link.hello()
        lost = link._serial
        assert lost is not None

        def unplugged(size: int = 1) -> bytes:
            raise serial.SerialException("device disconnected")

        lost.read = unplugged  # type: ignore[method-assign]
        with pytest.raises(DeviceReset) as exc:
            link.infer(x[0].tobytes())
        assert exc.value.code == "device_reset" and exc.value.info is not None
        assert link.resets == 1 and link._serial is not lost
        out = np.frombuffer(link.infer(x[0].tobytes()).output, dtype=np.int8)
    np.testing.assert_array_equal(out, y[0])


# --- retry rules, against a scripted board on a pty -----------------------------------------
Step = bytes | float  # bytes to write, or seconds to pause


class PtyBoard:
    """A device played by a thread on a pty: ``respond(bytes received)`` returns the steps
    to take (bytes to write, float seconds to pause)."""

    def __init__(self, respond: Callable[[bytes], list[Step]], greeting: bytes = b"") -> None:
        self.master, self.slave = pty.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self.respond = respond
        self._stop = threading.Event()
        if greeting:
            os.write(self.master, greeting)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.01)[0]:
                continue
            try:
                for step in self.respond(os.read(self.master, 4096)):
                    if isinstance(step, float):
                        time.sleep(step)
                    elif step:
                        os.write(self.master, step)
            except OSError:
                return

    def __enter__(self) -> PtyBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        os.close(self.master)
        os.close(self.slave)


TENSOR = TensorInfo("INT8", (1, 4), 0.5, 0)
INFO = DeviceInfo(PROTOCOL_VERSION, "fake 1", "fake", "c", bytes(32).hex(), (TENSOR,),
                  (TENSOR,), 100, 90, 0)
BOOT = encode_frame(Op.INFO, 0, pack_info(INFO, INFO_FLAG_BOOT))


def _board(answer: Callable[[Frame, int], list[Step]]) -> PtyBoard:
    """A board answering the n-th request (0-based) it decodes with ``answer(frame, n)``."""
    decoder = FrameDecoder()
    count = [0]

    def respond(data: bytes) -> list[Step]:
        steps: list[Step] = []
        for item in decoder.feed(data):
            if isinstance(item, Frame):
                steps += answer(item, count[0])
                count[0] += 1
        return steps

    return PtyBoard(respond)


def info_reply(frame: Frame) -> bytes:
    return encode_frame(Op.INFO, frame.seq, pack_info(INFO))


def result_reply(frame: Frame) -> bytes:
    data = unpack_infer(frame.payload)[3]
    return encode_frame(Op.RESULT, frame.seq,
                        pack_result(ResultHead(5, 0, len(data), crc32(data), data)))


def damaged(wire: bytes) -> bytes:
    """The frame with one byte in its second half flipped (never to the 0x00 delimiter)."""
    bad = bytearray(wire)
    k = len(bad) * 2 // 3
    bad[k] = (bad[k] ^ 0x55) or 0x33
    return bytes(bad)


def error(seq: int, code: ErrorCode) -> bytes:
    return encode_frame(Op.ERROR, seq, pack_error(code, Op.HELLO))


def test_stale_frames_are_ignored() -> None:
    def answer(f: Frame, n: int) -> list[Step]:
        if n == 0:
            return [info_reply(f)]
        old = (f.seq - 1) or 0xFFFF  # the first HELLO's seq
        return [encode_frame(Op.INFO, old, pack_info(INFO)),  # a stale reply
                damaged(encode_frame(Op.INFO, old, pack_info(INFO))),  # stale and damaged
                error(old, ErrorCode.TOO_LARGE),  # a stale error of another kind
                0.05, info_reply(f)]

    with _board(answer) as board, Link(board.port, timeout=1.0, retries=0,
                                       boot_wait=0.0) as link:
        link.hello()
        assert link.hello().board_id == "fake"
    assert link.retransmits == 0  # nothing resent, no retry spent


def test_line_noise_spends_no_retry() -> None:
    def answer(f: Frame, n: int) -> list[Step]:
        # a boot banner (text, then a resync), then damaged frames of no known request
        noise: list[Step] = [b"boot banner\r\n\x00"]
        for k in (0x1111, 0x2222, 0x3333):
            noise += [0.02, damaged(encode_frame(Op.RESULT, k, bytes(range(1, 40))))]
        return [*noise, 0.05, info_reply(f)] if n == 0 else [info_reply(f)]

    with _board(answer) as board, Link(board.port, timeout=1.0, retries=0,
                                       boot_wait=0.0) as link:
        assert link.hello().board_id == "fake"
    # damage that might have been the reply resends at once, but only retries + 1 times
    assert link.retransmits == 1


def test_damaged_reply_resends_at_once_without_counting() -> None:
    def answer(f: Frame, n: int) -> list[Step]:
        return [damaged(info_reply(f)) if n < 3 else info_reply(f)]

    t0 = time.monotonic()
    with _board(answer) as board, Link(board.port, timeout=2.0, retries=0,
                                       boot_wait=0.0) as link:
        assert link.hello().board_id == "fake"
    assert link.retransmits == 3 and time.monotonic() - t0 < 1.5  # no timeout waited


@pytest.mark.parametrize(("rejections", "ok"), [(4, False), (3, True)])
def test_bad_crc_error_for_our_seq_spends_a_line_retry(rejections: int, ok: bool) -> None:
    """retries=1: 2 x (1 + 1) rejections of the request end the command, as a noisy line
    (the device answered), not as a silent device."""
    def answer(f: Frame, n: int) -> list[Step]:
        return [error(f.seq, ErrorCode.BAD_CRC) if n < rejections else info_reply(f)]

    t0 = time.monotonic()
    with _board(answer) as board, Link(board.port, timeout=2.0, retries=1,
                                       boot_wait=0.0) as link:
        if ok:
            link.hello()
        else:
            with pytest.raises(TinyDeployError) as exc:
                link.hello()
            assert exc.value.code == "link_errors" and "answers" in str(exc.value)
            assert "4 of 4 attempts met a damaged frame" in str(exc.value)
    assert link.retransmits == 3 and link.rejected_frames == min(rejections, 4)
    assert time.monotonic() - t0 < 1.5  # backoff, no timeout waited


def test_error_about_an_unreadable_seq_resends_without_counting() -> None:
    def answer(f: Frame, n: int) -> list[Step]:
        # our request arrived with its seq cut off, then with its seq damaged
        steps = {0: [error(0, ErrorCode.BAD_FRAME)],
                 1: [error(f.seq ^ 0x0101, ErrorCode.BAD_CRC)]}
        return steps.get(n, [info_reply(f)])

    t0 = time.monotonic()
    with _board(answer) as board, Link(board.port, timeout=2.0, retries=1,
                                       boot_wait=0.0) as link:
        link.hello()
    assert link.retransmits == 2 and time.monotonic() - t0 < 1.5  # no timeout waited


def test_sends_are_bounded_when_every_reply_is_damaged() -> None:
    def answer(f: Frame, n: int) -> list[Step]:
        return [damaged(info_reply(f))]

    t0 = time.monotonic()
    with _board(answer) as board, Link(board.port, timeout=2.0, retries=1,
                                       boot_wait=0.0) as link, \
            pytest.raises(TinyDeployError) as exc:
        link.hello()
    assert exc.value.code == "link_errors" and "8 of 8 attempts" in str(exc.value)
    assert time.monotonic() - t0 < 1.5


def test_boot_announcement_during_first_hello_resends_at_once() -> None:
    def answer(f: Frame, n: int) -> list[Step]:
        return [BOOT] if n == 0 else [info_reply(f)]  # the board was booting: request lost

    t0 = time.monotonic()
    with _board(answer) as board, Link(board.port, timeout=2.0, retries=0) as link:
        link.hello()
    assert link.retransmits == 1 and link.resets == 0 and time.monotonic() - t0 < 1.5


@pytest.mark.parametrize("boot_wait", [0.0, 1.5])
def test_first_hello_waits_for_a_booting_board(boot_wait: float) -> None:
    up = time.monotonic() + 0.5

    def answer(f: Frame, n: int) -> list[Step]:
        return [info_reply(f)] if time.monotonic() > up else []

    with _board(answer) as board, Link(board.port, timeout=0.05, retries=1,
                                       boot_wait=boot_wait) as link:
        if boot_wait:
            assert link.hello().board_id == "fake"
        else:
            with pytest.raises(TinyDeployError, match="no answer"):
                link.hello()


@pytest.mark.parametrize("damage", [False, True], ids=["clean", "damaged"])
def test_boot_announcement_after_handshake_raises_device_reset(damage: bool) -> None:
    def answer(f: Frame, n: int) -> list[Step]:
        if f.op == Op.INFER and n == 1:  # reboots instead of answering
            return [damaged(BOOT) if damage else BOOT]
        return [info_reply(f) if f.op == Op.HELLO else result_reply(f)]

    with _board(answer) as board, Link(board.port, timeout=1.0, retries=0) as link:
        link.hello()
        with pytest.raises(DeviceReset) as exc:
            link.infer(b"\x01\x02\x03\x04")
        assert exc.value.info == INFO and link.resets == 1
        assert link.infer(b"\x01\x02\x03\x04").output == b"\x01\x02\x03\x04"


def test_hello_survives_corruption_both_ways() -> None:
    """0.4 % of the bytes flipped in both directions (the simulated board's fault model,
    in-process): every HELLO succeeds with the default retries, mostly without a timeout."""
    facts, retransmits = load(DATA / "sine_mlp.tflite"), 0
    for seed in range(12):
        dev = SimDevice(facts, Faults(corrupt=0.004, seed=seed))

        def respond(data: bytes, dev: SimDevice = dev) -> list[Step]:
            return [dev.mangle(r) for r in dev.feed(dev.mangle(data))]

        with PtyBoard(respond, greeting=dev.mangle(dev.announce())) as board, \
                Link(board.port, timeout=0.5) as link:
            for _ in range(3):
                info = link.hello()
                assert info.model_sha256 == facts.sha256
            retransmits += link.retransmits
    assert retransmits > 0  # the corruption did happen


def test_seq_wraps_past_zero() -> None:
    """Requests are numbered 1..65535; 0 stays the boot announcement's."""
    master, slave = pty.openpty()
    try:
        with Link(os.ttyname(slave)) as link:
            link._seq = 0xFFFE
            assert [link._next_seq() for _ in range(3)] == [0xFFFF, 1, 2]
    finally:
        os.close(master)
        os.close(slave)


def test_trace_dumps_damaged_frames_as_received() -> None:
    def answer(f: Frame, n: int) -> list[Step]:
        return [damaged(info_reply(f)) if n == 0 else info_reply(f)]

    with _logged() as records, _board(answer) as board, \
            Link(board.port, timeout=1.0, trace=True) as link:
        link.hello()
    bad = [r for r in records if r.startswith("trace RX damaged frame")]
    assert len(bad) == 1 and f"seq={link._seq}" in bad[0]
    assert "\n    0000  " in bad[0]  # the bytes as received, hex dumped


def test_sim_too_large_is_an_error_reply_not_a_timeout() -> None:
    with start_sim(MODEL) as sim, Link(sim.port, timeout=1.0) as link:
        link.hello()
        t0 = time.monotonic()
        frame = link.command(Op.INFER, bytes(5000))  # over the sim's 1024-byte limit
        assert time.monotonic() - t0 < 0.5
    assert frame.op == Op.ERROR and unpack_error(frame.payload)[0] == ErrorCode.TOO_LARGE


def test_sim_exits_quietly_on_ctrl_c() -> None:
    # Ctrl-C in a terminal reaches the validate process and its simulator child alike: the
    # child must stop without a traceback on the user's terminal
    import signal
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "tinydeploy.device.sim", str(MODEL)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert read_pty_line(proc, 60.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and b"Traceback" not in err, err.decode(errors="replace")


def test_validation_completes_at_0_1_percent_flipped_bytes(tmp_path: Path) -> None:
    """1 flipped byte in 1000, both ways, with 1960-byte inputs: a full-size frame arrives
    intact about half the time. The link resends with backoff and halves its chunks when
    damage repeats; every sample is validated, bit-exact."""
    from tinydeploy.device.sim import start_sim
    from tinydeploy.validation import validate

    model = DATA / "micro_speech_quantized.tflite"
    x = np.load(DATA / "micro_speech_quantized.inputs.npy")
    np.savez(tmp_path / "d.npz", x_test=np.concatenate([x] * 3)[:12])
    with start_sim(model, corrupt=0.001, seed=7) as sim:
        r = validate(model, tmp_path / "d.npz", tmp_path / "v", port=sim.port)
    link = r.report["link"]
    assert r.passed and r.samples == 12, r.summary()
    assert link["rejected"] + link["crc_errors"] > 0  # the line really was noisy
    assert link["chunk_shrinks"] >= 1 and link["chunk_bytes"] < 1024 - 12, link
    assert "chunks halved on a noisy line" in r.paths["html"].read_text()
