"""Host side of the device protocol (esptool style): one ``Link`` class on pyserial.

    with Link("/dev/ttyACM0") as link:
        info = link.hello()
        reply = link.infer(input_bytes)

``command()`` sends one frame and waits for its reply with bounded retries; the wait is
scaled by the bytes on the wire and the baud rate. A retry resends the same sequence
number, and the device answers a repeated INFER from its cache, so no sample runs twice.
A device reset (an unsolicited boot HELLO, or the port vanishing and coming back) raises
``DeviceReset`` (a ``TinyDeployError``) from ``infer()`` after a fresh handshake: that
sample did not produce a result, call ``infer()`` again.
"""

from __future__ import annotations

import contextlib
import random
import time
from types import TracebackType

import serial

from .errors import TinyDeployError
from .log import log
from .protocol import (
    HEADER_BYTES,
    INFO_FLAG_BOOT,
    PROTOCOL_VERSION,
    RESULT_HEADER,
    DeviceInfo,
    ErrorCode,
    Frame,
    FrameDecoder,
    FrameError,
    InferReply,
    Op,
    TensorInfo,
    encode_frame,
    error_name,
    frame_bytes,
    hexdump,
    unpack_error,
    unpack_info,
    unpack_result,
)

__all__ = ["Link", "DeviceInfo", "TensorInfo", "InferReply", "DeviceReset", "Op", "ErrorCode"]

RETRY_ERRORS = (ErrorCode.BAD_CRC, ErrorCode.BAD_FRAME)
REPLY_OPS = {Op.HELLO: Op.INFO, Op.INFER: Op.RESULT}
READ_SLICE = 0.02  # seconds one serial read may block
DAMAGE_RESENDS = 4  # resends on damage (no waiting) are bounded by 4x (retries + 1) sends
REOPEN_ATTEMPTS = 20
REOPEN_DELAY = 0.25


class DeviceReset(TinyDeployError):
    """The device restarted; ``info`` is the fresh handshake. Retry the failed call."""

    def __init__(self, port: str, count: int, info: DeviceInfo | None) -> None:
        super().__init__("device_reset", port=port, count=count)
        self.info = info


class Link:
    """A framed, retrying connection to a tinydeploy device on a serial port."""

    def __init__(self, port: str, baudrate: int = 115200, timeout: float = 2.0,
                 retries: int = 3, trace: bool = False) -> None:
        self.port = port
        self.baudrate = baudrate
        self.timeout = timeout
        self.retries = retries
        self.trace = trace
        self.resets = 0
        self.retransmits = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.info: DeviceInfo | None = None
        self._seq = random.randrange(1, 0xFFFF)
        self._decoder = FrameDecoder(max_payload=0xFFFF)
        self._serial: serial.Serial | None = None
        self._reset_seen = False
        self._last_rtt = 0.0
        self.open()

    # --- port ---------------------------------------------------------------------------
    def open(self) -> None:
        try:
            self._serial = serial.Serial(self.port, self.baudrate, timeout=READ_SLICE,
                                         write_timeout=max(self.timeout, 1.0))
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TinyDeployError("port_error", port=self.port, problem=exc) from exc
        self._decoder.reset()

    def close(self) -> None:
        if self._serial is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                self._serial.close()
            self._serial = None

    def __enter__(self) -> Link:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _reopen(self, problem: BaseException) -> None:
        """The port vanished (USB re-enumeration on reset): wait for it to come back."""
        log.warning("serial port %s lost (%s); reopening", self.port, problem)
        self.close()
        for _ in range(REOPEN_ATTEMPTS):
            time.sleep(REOPEN_DELAY)
            try:
                self.open()
                return
            except TinyDeployError:
                continue
        raise TinyDeployError("port_error", port=self.port,
                              problem=f"it vanished and did not come back ({problem})")

    # --- bytes --------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        assert self._serial is not None
        self._serial.write(data)
        self.bytes_sent += len(data)

    def _read(self) -> list[Frame | FrameError]:
        assert self._serial is not None
        chunk = self._serial.read(self._serial.in_waiting or 1)
        self.bytes_received += len(chunk)
        return self._decoder.feed(chunk) if chunk else []

    def _trace(self, direction: str, frame: Frame, wire: int | None = None) -> None:
        if not self.trace:
            return
        raw = frame_bytes(frame.op, frame.seq, frame.payload)
        extra = f", {wire} bytes on the wire" if wire is not None else ""
        log.info("trace %s %s seq=%d len=%d%s\n%s", direction, frame.op_name, frame.seq,
                 len(frame.payload), extra, hexdump(raw))

    def wait_seconds(self, out_bytes: int, in_bytes: int) -> float:
        """First wait for a reply: the base timeout plus twice the transfer time at the baud
        rate (10 bits per byte). Each retry doubles it (up to 8x)."""
        return self.timeout + 2.0 * 10.0 * (out_bytes + in_bytes) / self.baudrate

    def _next_seq(self) -> int:
        self._seq = self._seq % 0xFFFF + 1  # 1..65535; 0 is the boot announcement
        return self._seq

    # --- commands -----------------------------------------------------------------------
    def command(self, op: int, payload: bytes = b"", reply_bytes: int = 64) -> Frame:
        """Send one request and return its reply frame (the expected reply or an ERROR).

        Resends the same seq on timeout (at most ``retries`` timeouts, each wait doubling),
        and at once on a corrupted reply or a BAD_CRC/BAD_FRAME error (at most
        4 x (retries + 1) sends in all). Raises ``DeviceReset`` (after re-handshaking) when
        the device restarts during a non-HELLO command, and TinyDeployError("device_timeout")
        when the retries are used up.
        """
        seq = self._next_seq()
        wire = encode_frame(op, seq, payload, lead=True)
        frame = Frame(op, seq, bytes(payload))
        expect = REPLY_OPS.get(op)
        # wait per attempt: size-scaled, at least 1.5x the last round trip (a slow device),
        # doubled on every timeout (up to 8x) so that retries cannot pile up faster than a slow
        # device drains them
        wait = max(self.wait_seconds(len(wire), reply_bytes + 16), 1.5 * self._last_rtt)
        timeouts = sends = 0
        try:
            self._absorb_pending(op)
            while True:
                if sends:
                    self.retransmits += 1
                    log.debug("resend %d of %s seq=%d", sends, frame.op_name, seq)
                self._trace("TX", frame, len(wire))
                self._write(wire)
                sends += 1
                sent = time.monotonic()
                deadline = sent + wait * 2 ** min(timeouts, 3)
                reply = self._await(op, seq, expect, deadline)
                if reply is not None:
                    self._last_rtt = time.monotonic() - sent
                    return reply
                if time.monotonic() >= deadline:
                    timeouts += 1
                if timeouts > self.retries or sends >= DAMAGE_RESENDS * (self.retries + 1):
                    break
        except (serial.SerialException, OSError) as exc:
            self._reopen(exc)
            self._reset_seen = True
            self._handle_reset(op)  # raises DeviceReset unless this is a HELLO
            return self.command(op, payload, reply_bytes)
        raise TinyDeployError("device_timeout", port=self.port, attempts=sends)

    def _absorb_pending(self, op: int) -> None:
        """Read what arrived between commands, so a boot announcement is not missed."""
        assert self._serial is not None
        while self._serial.in_waiting:
            for item in self._read():
                if isinstance(item, Frame):
                    self._trace("RX", item)
                    self._note_boot(item)
        if self._reset_seen:
            self._handle_reset(op)

    def _note_boot(self, frame: Frame) -> bool:
        if frame.op == Op.INFO and len(frame.payload) > 1 and frame.payload[1] & INFO_FLAG_BOOT:
            self._reset_seen = True
            return True
        return False

    def _handle_reset(self, op: int) -> None:
        """Count the reset; for anything but HELLO re-handshake and raise DeviceReset."""
        self._reset_seen = False
        if self.info is None:
            return  # the boot announcement before the first handshake is no reset
        self.resets += 1
        log.warning("device on %s reset (%d so far)", self.port, self.resets)
        if op == Op.HELLO:
            return
        info = self.hello()
        raise DeviceReset(self.port, self.resets, info)

    def _await(self, op: int, seq: int, expect: Op | None, deadline: float) -> Frame | None:
        """Wait for the reply to ``seq``; None means resend now (timeout or damage)."""
        while time.monotonic() < deadline:
            resend = False
            for item in self._read():
                if isinstance(item, FrameError):
                    if self.trace:
                        log.info("trace RX damaged frame (%s)", item)
                    resend = True  # probably our reply, damaged
                    continue
                self._trace("RX", item)
                if self._note_boot(item):
                    self._handle_reset(op)  # raises DeviceReset unless op is HELLO
                    continue
                code = self._error_code(item)
                if item.seq != seq:
                    # stale reply to an earlier attempt -- unless it is an error about a
                    # frame too damaged to carry its seq (seq 0): most likely ours
                    resend |= item.seq == 0 and code in RETRY_ERRORS
                    continue
                if code in RETRY_ERRORS:
                    resend = True
                elif code is not None or expect is None or item.op == expect:
                    return item
            if resend:
                return None
        return None

    @staticmethod
    def _error_code(frame: Frame) -> int | None:
        if frame.op != Op.ERROR:
            return None
        try:
            return unpack_error(frame.payload)[0]
        except FrameError:
            return ErrorCode.BAD_FRAME

    def check(self, frame: Frame, expect: int) -> bytes:
        """Payload of ``frame`` if it has op ``expect``; ERROR -> TinyDeployError."""
        if frame.op == Op.ERROR:
            code, op, detail = unpack_error(frame.payload)
            raise TinyDeployError(
                "protocol_error",
                problem=f"{error_name(code)} for op 0x{op:02X} (detail {detail})",
                error=error_name(code), detail=detail)
        if frame.op != expect:
            raise TinyDeployError("protocol_error",
                                  problem=f"expected {Op(expect).name}, got {frame.op_name}")
        return frame.payload

    # --- API ------------------------------------------------------------------------------
    def hello(self) -> DeviceInfo:
        """Handshake: the device's firmware, model and tensor description."""
        frame = self.command(Op.HELLO, bytes([PROTOCOL_VERSION]), reply_bytes=256)
        try:
            info, _flags = unpack_info(self.check(frame, Op.INFO))
        except FrameError as exc:
            raise TinyDeployError("protocol_error", problem=f"bad INFO reply: {exc}") from exc
        if info.protocol_version != PROTOCOL_VERSION:
            raise TinyDeployError(
                "protocol_error",
                problem=f"device speaks protocol {info.protocol_version}, host "
                        f"{PROTOCOL_VERSION}")
        self.info = info
        return info

    def infer(self, data: bytes) -> InferReply:
        """Run one inference on the device: input tensor bytes -> output bytes and timing."""
        info = self.info or self.hello()
        if len(data) != info.input.nbytes:
            raise TinyDeployError(
                "bad_argument", problem=f"input is {len(data)} bytes, the device model takes "
                                        f"{info.input.nbytes}",
                fix="quantize the input to the model's input shape and dtype")
        if len(data) > info.max_payload:
            raise TinyDeployError("does_not_fit", what="input tensor", board=info.board_id,
                                  detail=f"{len(data)} > {info.max_payload} bytes per frame",
                                  fix="rebuild the firmware with a larger TD_MAX_PAYLOAD")
        frame = self.command(Op.INFER, bytes(data),
                             reply_bytes=HEADER_BYTES + RESULT_HEADER + info.output.nbytes)
        try:
            reply = unpack_result(self.check(frame, Op.RESULT))
        except FrameError as exc:
            raise TinyDeployError("protocol_error", problem=f"bad RESULT reply: {exc}") from exc
        if len(reply.output) != info.output.nbytes:
            raise TinyDeployError(
                "protocol_error", problem=f"RESULT has {len(reply.output)} output bytes, "
                                          f"expected {info.output.nbytes}")
        return reply
