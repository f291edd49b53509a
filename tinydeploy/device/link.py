"""Host side of the device protocol (esptool style): one ``Link`` class on pyserial.

    with Link("/dev/ttyACM0") as link:
        info = link.hello()
        reply = link.infer(input_bytes)   # all inputs' bytes concatenated in model order

``command()`` sends one frame and waits for its reply with bounded retries; the wait is
scaled by the bytes on the wire and the baud rate. A retry resends the same sequence
number, and the device answers a repeated INFER from its cache, so no sample runs twice.
Only a failure of the request itself spends a retry (a timeout, or a BAD_CRC/BAD_FRAME
error for its seq); damaged, stale or unrelated frames on the line do not. The first
HELLO keeps trying for at least ``boot_wait`` seconds, for a board that is still booting.
Every wait for an INFER reply also gets ``infer_seconds``, the time one inference may take
(:mod:`tinydeploy.device.timing`, or ``--timeout``), at most 4x the slowest INFER answered
so far; an INFER's whole budget holds it twice (one lost request), and running out of it
raises ``inference_timeout``, naming the option.
A device reset (an unsolicited boot HELLO, or the port vanishing and coming back) raises
``DeviceReset`` (a ``TinyDeployError``) from ``infer()`` after a fresh handshake: that
sample did not produce a result, call ``infer()`` again. ``infer()`` moves inputs and
outputs larger than one frame in chunks (DATA/READ), each its own retried request.

A noisy line is told from a silent device: a command that gives up after damaged frames
raises ``link_errors`` (``LineErrors``: the device answered), not ``device_timeout``.
Before that, resends after damage wait a short doubling backoff, and repeated damage halves
the chunks (:mod:`tinydeploy.device.chunking`) and sends the sample again.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections import deque
from types import TracebackType
from typing import Any

import serial

from ..errors import TinyDeployError
from ..log import log
from .chunking import ChunkSize, LineErrors
from .protocol import (
    DATA_HEADER,
    HEADER_BYTES,
    INFER_HEADER,
    INFER_RESET,
    INFO_FLAG_BOOT,
    MAX_PAYLOAD,
    MIN_PAYLOAD,
    PROTOCOL_VERSION,
    RESULT_HEADER,
    DeviceInfo,
    ErrorCode,
    Frame,
    FrameDecoder,
    FrameError,
    InferReply,
    Op,
    ResultHead,
    TensorInfo,
    cobs_max_len,
    crc32,
    encode_frame,
    error_name,
    frame_bytes,
    hexdump,
    info_version,
    pack_chunk,
    pack_infer,
    pack_span,
    unpack_chunk,
    unpack_error,
    unpack_info,
    unpack_result,
    unpack_span,
)

__all__ = ["Link", "DeviceInfo", "TensorInfo", "InferReply", "DeviceReset", "LineErrors", "Op",
           "ErrorCode"]

RETRY_ERRORS = (ErrorCode.BAD_CRC, ErrorCode.BAD_FRAME)
REPLY_OPS = {Op.HELLO: Op.INFO, Op.INFER: Op.RESULT, Op.DATA: Op.ACK, Op.READ: Op.OUTPUT}
RESTART_ERRORS = (ErrorCode.INPUT_CRC, ErrorCode.NO_RESULT)  # chunks lost: send all again
READ_SLICE = 0.02  # seconds one serial read may block
SEND_FACTOR = 4  # at most 4 x (retries + 1) sends per command, counted or not
MAX_BACKOFF = 3  # the wait doubles on every counted failure, up to 2**3 = 8x
BOOT_WAIT = 5.0  # the first HELLO does not give up before this many seconds
ABSORB_LIMIT = 0.2  # seconds spent draining unsolicited bytes before a command
REOPEN_ATTEMPTS = 20
REOPEN_DELAY = 0.25
PORT_LOSSES = 2  # a command gives up when the port vanishes this often
MAX_FRAME_PAYLOAD = 0xFFFF  # the frame's u16 length field
RECENT_SEQS = 16  # seqs of the last requests: replies carrying them may still be in flight
INFER_RTT_FACTOR = 4.0  # an inference may take 4x the slowest one answered (host load)
LINE_BACKOFF = 0.005  # seconds before a resend after a damaged frame, doubling per repeat
MAX_LINE_BACKOFF = 0.16

# what one wait for a reply ended with (besides the reply itself)
TIMEOUT = "timeout"  # no reply in time: counted
REJECTED = "rejected"  # BAD_CRC/BAD_FRAME error for this seq (the request arrived damaged):
# counted as a line error (LINE_FACTOR x (retries + 1) of them per command)
DAMAGED = "damaged"  # a damaged frame with this seq (our reply, damaged): not counted
SUSPECT = "suspect"  # damage that may concern this request: not counted, retries + 1 at most
REBOOTED = "rebooted"  # a boot announcement during a HELLO: the request was lost, not counted
COUNTED = (TIMEOUT,)
LINE = (REJECTED, DAMAGED, SUSPECT)  # the device answered, the line damaged a frame
LINE_FACTOR = 2  # line errors per command: 2 x (retries + 1), each cheap (no timeout)


class DeviceReset(TinyDeployError):
    """The device restarted; ``info`` is the fresh handshake. Retry the failed call."""

    def __init__(self, port: str, count: int, info: DeviceInfo | None) -> None:
        super().__init__("device_reset", port=port, count=count)
        self.info = info


class _Restart(Exception):
    """The device lost the chunks of this sample (an unnoticed reset): send them again."""


class Link:
    """A framed, retrying connection to a tinydeploy device on a serial port."""

    def __init__(self, port: str, baudrate: int = 115200, timeout: float = 2.0,
                 retries: int = 3, trace: bool = False, boot_wait: float = BOOT_WAIT,
                 infer_seconds: float = 0.0) -> None:
        self.port = port
        self.baudrate = baudrate
        self.timeout = timeout
        # the time one inference may take (device.timing): added to every INFER wait; once
        # INFERs were answered, at most INFER_RTT_FACTOR x the slowest answer
        self.infer_seconds = infer_seconds
        self._slowest_infer = 0.0
        self.retries = retries
        self.trace = trace
        self.boot_wait = boot_wait
        self.resets = 0
        self.retransmits = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.damaged_frames = 0  # frames received with a bad CRC or framing
        self.rejected_frames = 0  # requests the device reported damaged (BAD_CRC/BAD_FRAME)
        self.timeouts = 0  # waits for a reply that ended without one
        self.chunks = ChunkSize()  # bytes per DATA/READ frame, smaller on a noisy line
        self.info: DeviceInfo | None = None
        self._seq = random.randrange(1, 0xFFFF)
        self._recent: deque[int] = deque(maxlen=RECENT_SEQS)
        self._decoder = FrameDecoder(max_payload=MAX_FRAME_PAYLOAD)
        self._serial: serial.Serial | None = None
        self._reset_seen = False
        self._booting = True  # no HELLO answered since the port opened or the device reset
        self._last_rtt = 0.0
        self._infer_sent = False  # the current sample's INFER went out
        self.open()

    # --- port ---------------------------------------------------------------------------
    def open(self) -> None:
        try:
            # the write timeout covers a full default-size frame; _write raises it for more
            self._serial = serial.Serial(
                self.port, self.baudrate, timeout=READ_SLICE,
                write_timeout=self.wait_seconds(cobs_max_len(MAX_PAYLOAD + 16), 0))
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
        need = self.wait_seconds(len(data), 0)  # a big frame on a slow UART takes a while
        if (self._serial.write_timeout or 0.0) < need:
            self._serial.write_timeout = need
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

    def _trace_damaged(self, err: FrameError) -> None:
        if self.trace:
            seq = "?" if err.seq is None else str(err.seq)
            log.info("trace RX damaged frame (%s) seq=%s, %d bytes as received (COBS)\n%s",
                     err, seq, len(err.data), hexdump(err.data))

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

        A timeout resends the same seq and doubles the wait (up to 8x); after ``retries``
        of them: ``device_timeout``. Line errors -- a BAD_CRC/BAD_FRAME error for this seq,
        a damaged frame with this seq, or (at most retries + 1 times) damage with an unknown
        seq -- resend after a short doubling backoff, at most ``LINE_FACTOR`` x (retries +
        1) rejections; giving up after as many line errors as timeouts or more raises
        ``LineErrors``. A boot announcement during a HELLO resends at once; stale frames
        are ignored. Bounds: 4 x (retries + 1) sends and the time retries + 1 waits take;
        the first HELLO after opening or a reset tries for at least ``boot_wait`` seconds.
        Raises ``DeviceReset`` (after re-handshaking) when the device restarts during a
        non-HELLO command.
        """
        lost: BaseException | None = None
        for _ in range(PORT_LOSSES):
            try:
                return self._exchange(op, payload, reply_bytes)
            except (serial.SerialException, OSError) as exc:
                lost = exc
                self._reopen(exc)
                self._reset_seen = True
                self._booting = True
                self._handle_reset(op)  # raises DeviceReset unless this is a HELLO
        raise TinyDeployError("port_error", port=self.port,
                              problem=f"it vanished {PORT_LOSSES} times during one command "
                                      f"({lost})")

    def _exchange(self, op: int, payload: bytes, reply_bytes: int) -> Frame:
        seq = self._next_seq()
        self._recent.append(seq)
        wire = encode_frame(op, seq, payload, lead=True)
        frame = Frame(op, seq, bytes(payload))
        expect = REPLY_OPS.get(op)
        # wait per attempt: size-scaled, at least 1.5x the last round trip (a slow device),
        # doubled on every counted failure so that retries cannot pile up faster than a
        # slow device drains them
        wait = max(self.wait_seconds(len(wire), reply_bytes + 16), 1.5 * self._last_rtt)
        compute = 0.0  # the device computing an INFER: added to each wait, not doubled
        if op == Op.INFER:
            compute = self.infer_seconds
            if self._slowest_infer:
                compute = min(compute, INFER_RTT_FACTOR * self._slowest_infer)
        # the device computes at most twice (one lost request): a dead device is reported
        # after 2 x compute plus the usual waits, not (retries + 1) x compute
        budget = (sum(wait * 2 ** min(k, MAX_BACKOFF) for k in range(self.retries + 1))
                  + min(self.retries + 1, 2) * compute)
        max_sends = SEND_FACTOR * (self.retries + 1)
        self._absorb_pending(op)
        floor = self.boot_wait if op == Op.HELLO and self._booting else 0.0
        start = time.monotonic()
        end = start + max(budget, floor)
        failures = sends = guesses = line = silent = rejected = 0
        exhausted = False
        while True:
            if sends:
                self.retransmits += 1
                log.debug("resend %d of %s seq=%d", sends, frame.op_name, seq)
            self._trace("TX", frame, len(wire))
            sent = time.monotonic()
            deadline = min(sent + wait * 2 ** min(failures, MAX_BACKOFF) + compute, end)
            sends += 1
            try:
                self._write(wire)
            except serial.SerialTimeoutException:
                outcome: Frame | str = TIMEOUT  # the device does not drain its input
                time.sleep(max(0.0, min(deadline, end) - time.monotonic()))
            else:
                # once the budget is spent (only while a booting board gets its floor time)
                # resend on timeouts only
                outcome = self._await(op, seq, expect, deadline, fast=not exhausted,
                                      guess=guesses <= self.retries)
            if isinstance(outcome, Frame):
                self._note_line(line)
                self._last_rtt = time.monotonic() - sent
                if op == Op.INFER and outcome.op == Op.RESULT:
                    self._slowest_infer = max(self._slowest_infer, self._last_rtt)
                if op == Op.HELLO:
                    self._booting = False
                return outcome
            if outcome in COUNTED:
                failures += 1
                self.timeouts += 1
                silent += 1
            elif outcome == REJECTED:
                self.rejected_frames += 1
                rejected += 1
            elif outcome == SUSPECT:
                guesses += 1
            if outcome in LINE:  # the device answered: a noisy line
                line += 1
                time.sleep(min(LINE_BACKOFF * 2 ** (line - 1), MAX_LINE_BACKOFF,
                               max(0.0, end - time.monotonic())))
            log.debug("%s seq=%d: %s", frame.op_name, seq, outcome)
            now = time.monotonic()
            exhausted = (failures > self.retries or sends >= max_sends
                         or rejected >= LINE_FACTOR * (self.retries + 1))
            if now >= end or (exhausted and now - start >= floor):
                break
        self._note_line(line)
        if line and line >= silent:  # it answered, damaged: not a silent device
            raise LineErrors(self.port, line, sends, silent)
        if op == Op.INFER:
            raise TinyDeployError("inference_timeout", port=self.port, attempts=sends,
                                  seconds=f"{wait + compute:.1f}",
                                  allowed=f"{compute:.1f}")
        raise TinyDeployError("device_timeout", port=self.port, attempts=sends)

    def _note_line(self, line: int) -> None:
        if self.info is not None:
            self.chunks.note(line, self._device_chunk(self.info))

    def _shrink(self) -> bool:
        """Halve the chunk size (False: already the smallest)."""
        if self.info is None or not self.chunks.shrink(self._device_chunk(self.info)):
            return False
        log.debug("noisy line on %s: chunks of %d bytes", self.port, self.chunks.limit)
        return True

    def _absorb_pending(self, op: int) -> None:
        """Read what arrived between commands, so a boot announcement is not missed (for at
        most ABSORB_LIMIT seconds: a device that never stops talking cannot stall us)."""
        assert self._serial is not None
        limit = time.monotonic() + ABSORB_LIMIT
        while self._serial.in_waiting and time.monotonic() < limit:
            for item in self._read():
                if isinstance(item, FrameError):
                    self.damaged_frames += 1
                    self._trace_damaged(item)
                else:
                    self._trace("RX", item)
                self._note_boot(item)
        if self._reset_seen:
            self._handle_reset(op)

    def _note_boot(self, item: Frame | FrameError) -> bool:
        """A boot announcement: INFO with the BOOT flag and seq 0 (host requests never use
        seq 0), or a damaged frame whose header still reads INFO, seq 0."""
        if isinstance(item, FrameError):
            boot = item.op == Op.INFO and item.seq == 0
        else:
            boot = (item.op == Op.INFO and len(item.payload) > 1
                    and bool(item.payload[1] & INFO_FLAG_BOOT))
        if boot:
            self._reset_seen = True
            self._booting = True
        return boot

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

    def _await(self, op: int, seq: int, expect: Op | None, deadline: float,
               fast: bool = True, guess: bool = True) -> Frame | str:
        """Wait for the reply to ``seq``: the reply frame, or why to resend: ``TIMEOUT``, or
        with ``fast`` at once ``REJECTED``, ``DAMAGED``, ``REBOOTED`` or (with ``guess``)
        ``SUSPECT``."""
        while time.monotonic() < deadline:
            found: set[str] = set()
            for item in self._read():
                if isinstance(item, FrameError):
                    self.damaged_frames += 1
                    self._trace_damaged(item)
                    if self._note_boot(item):
                        self._handle_reset(op)  # raises DeviceReset unless op is HELLO
                        found.add(REBOOTED)
                    elif item.seq == seq:
                        found.add(DAMAGED)  # our reply, damaged on the way
                    elif item.seq is not None and item.seq not in self._recent:
                        # no stale reply carries that seq: our reply damaged in its seq,
                        # or line noise
                        found.add(SUSPECT)
                    continue  # a damaged stale reply, or a fragment: ignore
                self._trace("RX", item)
                if self._note_boot(item):
                    self._handle_reset(op)  # raises DeviceReset unless op is HELLO
                    found.add(REBOOTED)
                    continue
                code = self._error_code(item)
                if item.seq != seq:
                    # a stale reply to an earlier request: ignored -- but an error about a
                    # damaged frame is most likely about our request with its seq damaged
                    # or cut off (only the host sends frames)
                    if code in RETRY_ERRORS:
                        found.add(SUSPECT)
                    continue
                if code in RETRY_ERRORS:
                    found.add(REJECTED)  # our request arrived damaged
                elif code is not None or expect is None or item.op == expect:
                    return item
            if not guess:
                found.discard(SUSPECT)
            if found and fast:
                return next(o for o in (REJECTED, REBOOTED, DAMAGED, SUSPECT) if o in found)
        return TIMEOUT

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
            try:
                code, op, detail = unpack_error(frame.payload)
            except FrameError as exc:
                raise TinyDeployError("protocol_error", problem=f"bad ERROR reply: {exc}") from exc
            raise TinyDeployError(
                "protocol_error",
                problem=f"{error_name(code)} for op 0x{op:02X} (detail {detail})",
                error=error_name(code), detail=detail)
        if frame.op != expect:
            raise TinyDeployError("protocol_error",
                                  problem=f"expected {Op(expect).name}, got {frame.op_name}")
        return frame.payload

    # --- API ------------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        """The link's counters since it was opened.

        Returns:
            ``retransmits`` (requests sent again), ``timeouts``, ``crc_errors`` (damaged
            frames received), ``rejected`` (requests the device received damaged),
            ``resets`` (device restarts), ``bytes_sent``, ``bytes_received``,
            ``chunk_shrinks`` (times a noisy line halved the chunks), ``chunk_bytes`` (the
            chunk size at the end).
        """
        return {"retransmits": self.retransmits, "timeouts": self.timeouts,
                "crc_errors": self.damaged_frames, "rejected": self.rejected_frames,
                "resets": self.resets, "bytes_sent": self.bytes_sent,
                "bytes_received": self.bytes_received, "chunk_shrinks": self.chunks.shrinks,
                "chunk_bytes": self._chunk(self.info) if self.info else 0}

    def hello(self) -> DeviceInfo:
        """Handshake: the device's firmware, model and tensor description."""
        frame = self.command(Op.HELLO, bytes([PROTOCOL_VERSION]), reply_bytes=512)
        payload = self.check(frame, Op.INFO)
        version = info_version(payload)
        if version != PROTOCOL_VERSION:
            raise TinyDeployError(
                "protocol_error",
                problem=f"the device firmware speaks protocol {version}, this tinydeploy "
                        f"speaks {PROTOCOL_VERSION} (firmware from another tinydeploy version)")
        try:
            info, _flags = unpack_info(payload)
        except FrameError as exc:
            raise TinyDeployError("protocol_error", problem=f"bad INFO reply: {exc}") from exc
        if info.max_payload < MIN_PAYLOAD:
            raise TinyDeployError("protocol_error",
                                  problem=f"device frames of {info.max_payload} bytes are "
                                          f"below the minimum {MIN_PAYLOAD}")
        self.info = info
        return info

    def infer(self, data: bytes, reset: bool = True) -> InferReply:
        """Run one inference on the device: all input tensors' bytes concatenated in model
        order -> all outputs' bytes (concatenated) and the timing.

        Inputs larger than one frame go in DATA chunks written straight into the device's
        input tensors, the last chunk rides on the INFER, which checks the CRC of the whole
        input before running; outputs larger than the RESULT frame are fetched with READ.
        Every frame is its own retried request. ``reset`` (default) asks the device to reset
        the model's state first; pass False to run a sequence through a stateful model.
        Raises DeviceReset when the device restarted (call again), TinyDeployError else.
        """
        info = self.info or self.hello()
        data = bytes(data)
        if len(data) != info.input_bytes:
            raise TinyDeployError(
                "bad_argument", problem=f"input is {len(data)} bytes, the device model takes "
                                        f"{info.input_bytes}",
                fix="quantize the input to the model's input shapes and dtypes")
        flags = INFER_RESET if reset else 0
        for _ in range(self.retries + 1):
            try:
                return self._infer_line_safe(info, data, flags, reset)
            except _Restart as why:
                if not reset and str(why) == ErrorCode.NO_RESULT.name:
                    # the model ran, then the device lost the result (a reset nobody saw):
                    # running it again would step a stateful model twice
                    raise TinyDeployError(
                        "protocol_error",
                        problem="the device lost the result of a stateful step (did it "
                                "reset?); the sequence cannot resume") from None
                log.warning("device on %s lost the chunks of this sample (%s); sending it "
                            "again", self.port, why)
        raise TinyDeployError("protocol_error",
                              problem=f"the device lost the chunks of one sample "
                                      f"{self.retries + 1} times")

    def _infer_line_safe(self, info: DeviceInfo, data: bytes, flags: int,
                         reset: bool) -> InferReply:
        """``_infer_once``; on ``LineErrors`` halve the chunks and send the sample again
        (a stateful step only when its INFER never went out)."""
        while True:
            try:
                return self._infer_once(info, data, flags)
            except LineErrors:
                if not self._shrink() or (not reset and self._infer_sent):
                    raise
                log.warning("noisy line on %s: resending the sample in chunks of %d bytes",
                            self.port, self._chunk(info))

    @staticmethod
    def _device_chunk(info: DeviceInfo) -> int:
        return min(info.max_payload, MAX_FRAME_PAYLOAD) - INFER_HEADER

    def _chunk(self, info: DeviceInfo) -> int:
        """Input/output bytes per frame: the device's payload limit minus the headers, or
        less on a noisy line (``chunks``)."""
        return self.chunks.size(self._device_chunk(info))

    def _infer_once(self, info: DeviceInfo, data: bytes, flags: int) -> InferReply:
        chunk = self._chunk(info)
        self._infer_sent = False
        last = 0 if len(data) <= chunk else (len(data) - 1) // chunk * chunk
        for off in range(0, last, chunk):
            piece = data[off:off + chunk]
            frame = self.command(Op.DATA, pack_chunk(off, piece), reply_bytes=HEADER_BYTES + 8)
            got = self._payload(frame, Op.ACK, "ACK", unpack_span)
            if got != (off, len(piece)):
                raise TinyDeployError("protocol_error",
                                      problem=f"ACK for {got}, sent offset {off} + {len(piece)}")
        self._infer_sent = True  # from here the device may have run the model
        frame = self.command(Op.INFER, pack_infer(flags, last, crc32(data), data[last:]),
                             reply_bytes=HEADER_BYTES + RESULT_HEADER + min(
                                 info.output_bytes, info.max_payload))
        head: ResultHead = self._payload(frame, Op.RESULT, "RESULT", unpack_result)
        if head.total != info.output_bytes or len(head.data) > head.total:
            raise TinyDeployError(
                "protocol_error", problem=f"RESULT announces {head.total} output bytes "
                                          f"(carrying {len(head.data)}), expected "
                                          f"{info.output_bytes}")
        out = bytearray(head.data)
        while len(out) < head.total:
            want = min(head.total - len(out), chunk)
            frame = self.command(Op.READ, pack_span(len(out), want),
                                 reply_bytes=HEADER_BYTES + DATA_HEADER + want)
            off, piece = self._payload(frame, Op.OUTPUT, "OUTPUT", unpack_chunk)
            if off != len(out) or not piece or len(piece) > want:
                raise TinyDeployError("protocol_error",
                                      problem=f"OUTPUT of {len(piece)} bytes at {off}, asked "
                                              f"for {want} at {len(out)}")
            out += piece
        if crc32(bytes(out)) != head.crc:
            raise TinyDeployError("protocol_error",
                                  problem="the output's CRC differs from the RESULT's")
        return InferReply(bytes(out), head.time_us, head.cycles)

    def _payload(self, frame: Frame, expect: int, what: str, parse: Any) -> Any:
        """Parse the payload of the reply ``frame`` (op ``expect``); an INPUT_CRC/NO_RESULT
        error raises _Restart, other errors TinyDeployError."""
        if frame.op == Op.ERROR:
            code = self._error_code(frame)
            if code in RESTART_ERRORS:
                raise _Restart(error_name(code or 0))
        try:
            return parse(self.check(frame, expect))
        except FrameError as exc:
            raise TinyDeployError("protocol_error", problem=f"bad {what} reply: {exc}") from exc
