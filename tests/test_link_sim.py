"""Link against real pseudo-terminals: the C core (td_native_main.c with a fake model) and
the simulated board (tinydeploy.sim) with fault injection."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tinydeploy.errors import TinyDeployError
from tinydeploy.facts import load
from tinydeploy.hostref import HostModel
from tinydeploy.link import DeviceReset, Link
from tinydeploy.log import log
from tinydeploy.protocol import ErrorCode, Frame, Op, cobs_encode, frame_bytes, unpack_error
from tinydeploy.sim import read_pty_line, start_sim

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
    cmd = [GCC, "-std=c99", "-Wall", "-Wextra", "-Werror", "-I", str(FW),
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
    assert info.protocol_version == 1
    assert info.board_id == "native" and info.runtime == "c"
    assert info.firmware_version.startswith("tinydeploy-native")
    assert info.model_sha256 == bytes(range(32)).hex()
    assert info.input.dtype == "INT8" and info.input.shape == (1, 1024)
    assert (info.input.scale, info.input.zero_point) == (0.5, -3)
    assert (info.output.scale, info.output.zero_point) == (0.25, 7)
    assert (info.arena_size, info.arena_used) == (2048, 1500)
    assert info.max_payload == 4096


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
        wire = b"\x00" + cobs_encode(frame_bytes(Op.INFER, 4242, x)) + b"\x00"
        replies = []
        for _ in range(2):  # the same seq twice: the second is a retry
            link._write(wire)
            replies.append(_wait_frame(link, 4242))
        again = link.infer(x).output[0]
    assert replies[0] == replies[1]
    assert replies[0].payload[8] == (first + 1) % 256
    assert again == (first + 2) % 256


def _wait_frame(link: Link, seq: int) -> Frame:
    import time

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
    y = HostModel(load(MODEL)).predict(x).reshape(len(x), -1)
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


def test_trace_logs_hex_dump(reference: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = reference
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Collect()
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with start_sim(MODEL) as sim, Link(sim.port, timeout=1.0, trace=True) as link:
            link.hello()
            link.infer(x[0].tobytes())
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
    tx = [r for r in records if r.startswith("trace TX INFER")]
    rx = [r for r in records if r.startswith("trace RX RESULT")]
    assert tx and rx
    assert "0000  02 " in tx[0]  # hex dump of the raw frame: op INFER first
    assert "0000  82 " in rx[0]


def test_link_timeout_and_bad_port(tmp_path: Path) -> None:
    with pytest.raises(TinyDeployError) as exc:
        Link(str(tmp_path / "nope"))
    assert exc.value.code == "port_error"
    import os
    import pty

    master, slave = pty.openpty()  # nobody answers
    try:
        with Link(os.ttyname(slave), timeout=0.05, retries=2) as link, \
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
