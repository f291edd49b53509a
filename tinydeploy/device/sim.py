"""Simulated board: the device protocol on a pseudo-terminal, the model in the TFLM Python
runtime, with fault injection for testing the link.

    python -m tinydeploy.device.sim MODEL.tflite [--corrupt P] [--drop P] [--split] \
        [--reset-after K] [--delay S] [--infer-delay S] [--wrong-outputs F] \
        [--float-offset X] [--seed N] [--stats FILE] [--max-payload BYTES]

prints ``PTY /dev/pts/N`` (like ``td_native_main.c``) and serves until killed.
``start_sim(model, **faults)`` runs it as a child process (a context manager with ``.port``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
import tty
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import TinyDeployError
from ..facts import ModelFacts, load
from ..output import write_atomic
from .protocol import (
    DATA_HEADER,
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
    crc32,
    encode_frame,
    pack_chunk,
    pack_error,
    pack_info,
    pack_result,
    pack_span,
    unpack_chunk,
    unpack_infer,
    unpack_span,
)
from .ptyproc import PtyProcess, spawn

START_TIMEOUT = 60.0


@dataclass
class Faults:
    """What the simulated board does wrong (all off by default)."""

    corrupt: float = 0.0  # probability per byte (both directions) of a flipped byte
    drop: float = 0.0  # probability per byte (both directions) of a lost byte
    split: bool = False  # write replies in small pieces with pauses
    reset_after: int | None = None  # reboot once, on the request after K inferences
    delay: float = 0.0  # seconds before every reply
    infer_delay: float = 0.0  # seconds every inference takes (a slow model)
    wrong_outputs: float = 0.0  # fraction of samples with one output off by 1 LSB (ULP)
    float_offset: float = 0.0  # added to every value of every float output
    defect: str = ""  # compute like a TFLM library with this known defect (tflm_overrides)
    seed: int = 0


@dataclass
class SimStats:
    invocations: int = 0  # model runs (a retried request answered from cache is not one)
    cached_replies: int = 0
    resets: int = 0
    wrong: list[int] = field(default_factory=list)  # invocation indices perturbed
    errors_sent: int = 0


def _tensor(t: Any) -> TensorInfo:
    return TensorInfo(t.dtype, tuple(t.shape), float(t.scale or 0.0), int(t.zero_point or 0))


def _arena_used(model: Any) -> int:
    if hasattr(model, "arena_used"):  # a stand-in reference (hostref_native): replayed
        return int(model.arena_used)
    try:
        text = model.allocations()
    except Exception:  # the runtime may not expose it
        return 0
    m = re.search(r"Arena allocation total (\d+) bytes", text)
    return int(m.group(1)) if m else 0


class SimDevice:
    """The device-side protocol in Python: bytes in -> bytes out, faults applied. Like the C
    core it assembles DATA/INFER chunks into one input buffer and serves the output from
    one buffer (RESULT + READ), with frames of at most ``max_payload`` bytes."""

    def __init__(self, facts: ModelFacts, faults: Faults | None = None,
                 max_payload: int = MAX_PAYLOAD) -> None:
        from ..hostref_native import reference_model

        self.facts = facts
        self.faults = faults or Faults()
        self.rng = random.Random(self.faults.seed)
        self.model = reference_model(facts)  # tflite-micro, else a stand-in
        if self.faults.defect:  # a board whose TFLM library has a known defect
            from ..tflm_overrides import OVERRIDES

            override = next(o for o in OVERRIDES if o.defect == self.faults.defect)
            self.model = reference_model(load(override.simulate(facts)))
        self.max_payload = max(MIN_PAYLOAD, min(int(max_payload), 0xFFFF))
        self.info = DeviceInfo(
            protocol_version=PROTOCOL_VERSION, firmware_version=f"tinydeploy-sim {__version__}",
            board_id="sim", runtime="sim", model_sha256=facts.sha256,
            inputs=tuple(_tensor(t) for t in facts.inputs),
            outputs=tuple(_tensor(t) for t in facts.outputs), arena_size=self.model.arena_size,
            arena_used=_arena_used(self.model), cpu_hz=0, max_payload=self.max_payload)
        self.decoder = FrameDecoder(self.max_payload)
        self.input = bytearray(self.info.input_bytes)  # the model's input buffer
        self.output = b""  # the output of the last run
        self.head: ResultHead | None = None  # its RESULT header (None: no result held)
        self.cache: tuple[int, bytes] | None = None  # seq, payload of the INFER it answers
        self.stats = SimStats()
        self.reset_done = False

    # --- faults -------------------------------------------------------------------------
    def mangle(self, data: bytes) -> bytes:
        """Apply the corrupt/drop faults to bytes crossing the wire."""
        f = self.faults
        if not (f.corrupt or f.drop):
            return data
        out = bytearray()
        for b in data:
            if f.drop and self.rng.random() < f.drop:
                continue
            if f.corrupt and self.rng.random() < f.corrupt:
                b ^= self.rng.randrange(1, 256)
            out.append(b)
        return bytes(out)

    # --- protocol -----------------------------------------------------------------------
    def announce(self) -> bytes:
        return encode_frame(Op.INFO, 0, pack_info(self.info, INFO_FLAG_BOOT), lead=True)

    def reboot(self) -> bytes:
        """Forget everything in flight, as a power cycle would, and announce again."""
        self.decoder.reset()
        self.cache = None
        self.head = None
        self.input = bytearray(len(self.input))
        self.model.reset()
        self.stats.resets += 1
        return self.announce()

    def feed(self, data: bytes) -> list[bytes]:
        """Received bytes (already mangled) -> encoded reply frames."""
        replies: list[bytes] = []
        for item in self.decoder.feed(data):
            if isinstance(item, FrameError):
                self.stats.errors_sent += 1
                replies.append(encode_frame(Op.ERROR, item.seq or 0,
                                            pack_error(item.code, item.op or 0)))
                continue
            reply = self.handle(item)
            if reply == b"REBOOT":
                return [self.reboot()]
            if reply:
                replies.append(reply)
        return replies

    def _error(self, frame: Frame, code: ErrorCode, detail: int = 0) -> bytes:
        self.stats.errors_sent += 1
        return encode_frame(Op.ERROR, frame.seq, pack_error(code, frame.op, detail))

    def _write(self, offset: int, data: bytes) -> bool:
        if offset > len(self.input) or len(data) > len(self.input) - offset:
            return False
        if data:
            self.head = None  # the input may share memory with the output (TFLM)
            self.input[offset:offset + len(data)] = data
        return True

    def _result(self, seq: int) -> bytes:
        assert self.head is not None
        first = self.output[:self.max_payload - RESULT_HEADER]
        head = ResultHead(self.head.time_us, self.head.cycles, len(self.output),
                          self.head.crc, first)
        return encode_frame(Op.RESULT, seq, pack_result(head))

    def handle(self, frame: Frame) -> bytes:
        if frame.op == Op.HELLO:
            return encode_frame(Op.INFO, frame.seq, pack_info(self.info))
        if frame.op == Op.DATA:
            if len(frame.payload) < DATA_HEADER:
                return self._error(frame, ErrorCode.BAD_LENGTH, DATA_HEADER)
            offset, data = unpack_chunk(frame.payload)
            if not self._write(offset, data):
                return self._error(frame, ErrorCode.BAD_OFFSET, len(self.input))
            return encode_frame(Op.ACK, frame.seq, pack_span(offset, len(data)))
        if frame.op == Op.READ:
            if len(frame.payload) < 8:
                return self._error(frame, ErrorCode.BAD_LENGTH, 8)
            if self.head is None:
                return self._error(frame, ErrorCode.NO_RESULT)
            offset, want = unpack_span(frame.payload)
            if offset > len(self.output):
                return self._error(frame, ErrorCode.BAD_OFFSET, len(self.output))
            want = min(want, len(self.output) - offset, self.max_payload - DATA_HEADER)
            return encode_frame(Op.OUTPUT, frame.seq,
                                pack_chunk(offset, self.output[offset:offset + want]))
        if frame.op != Op.INFER:
            return self._error(frame, ErrorCode.BAD_COMMAND)
        try:
            flags, offset, crc, data = unpack_infer(frame.payload)
        except FrameError:
            return self._error(frame, ErrorCode.BAD_LENGTH, INFER_HEADER)
        if self.head is not None and self.cache == (frame.seq, frame.payload):
            self.stats.cached_replies += 1
            return self._result(frame.seq)
        if not self._write(offset, data):
            return self._error(frame, ErrorCode.BAD_OFFSET, len(self.input))
        self.head = None
        got = crc32(bytes(self.input))
        if got != crc:
            return self._error(frame, ErrorCode.INPUT_CRC, got)
        f = self.faults
        if f.reset_after is not None and not self.reset_done \
                and self.stats.invocations >= f.reset_after:
            self.reset_done = True
            return b"REBOOT"
        reply = self.run(bytes(self.input), reset=bool(flags & INFER_RESET))
        self.output = reply.output
        self.head = ResultHead(reply.time_us, reply.cycles, len(reply.output),
                               crc32(reply.output), b"")
        self.cache = (frame.seq, frame.payload)
        return self._result(frame.seq)

    def run(self, data: bytes, reset: bool = True) -> InferReply:
        """All inputs' bytes concatenated -> all outputs' bytes, the model timed."""
        xs, off = [], 0
        for t in self.facts.inputs:
            xs.append(np.frombuffer(data, dtype=t.numpy_dtype, count=t.elements,
                                    offset=off).reshape(t.shape))
            off += t.nbytes
        t0 = time.perf_counter()
        ys = [np.array(y) for y in self.model.run(xs, reset=reset)]
        if self.faults.infer_delay:  # a slow device: busy, not reading its input meanwhile
            time.sleep(self.faults.infer_delay)
        time_us = int((time.perf_counter() - t0) * 1e6)
        index = self.stats.invocations
        self.stats.invocations += 1
        if self.faults.wrong_outputs and self.rng.random() < self.faults.wrong_outputs:
            j = self.rng.randrange(len(ys))
            y = ys[j]
            k = self.rng.randrange(y.size)
            step = self.rng.choice((-1, 1))
            if np.issubdtype(y.dtype, np.integer):
                flat = y.reshape(-1).astype(np.int64)
                info = np.iinfo(y.dtype)
                if not info.min <= flat[k] + step <= info.max:
                    step = -step
                flat[k] += step
            else:  # one ULP
                flat = y.reshape(-1).copy()
                flat[k] = np.nextafter(flat[k], np.inf * step, dtype=y.dtype)
            ys[j] = flat.astype(y.dtype).reshape(y.shape)
            self.stats.wrong.append(index)
        if self.faults.float_offset:
            ys = [(y + y.dtype.type(self.faults.float_offset)).astype(y.dtype)
                  if np.issubdtype(y.dtype, np.floating) else y for y in ys]
        return InferReply(b"".join(y.tobytes() for y in ys), time_us, 0)


# --- the process: a pty served by SimDevice -----------------------------------------------
def serve(model: str | Path, faults: Faults, stats_path: str | None = None,
          max_payload: int = MAX_PAYLOAD) -> None:
    device = SimDevice(load(model), faults, max_payload)
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)  # keep the slave open: reads never EIO while the host reconnects
    # SIGTERM from the parent, Ctrl-C (it reaches the whole process group): a quiet exit,
    # from the moment the PTY line is out (a caller may signal right after reading it)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    print(f"PTY {os.ttyname(slave)}", flush=True)

    def write(data: bytes) -> None:
        data = device.mangle(data)
        if faults.split:
            i = 0
            while i < len(data):
                n = device.rng.randint(1, 16)
                os.write(master, data[i:i + n])
                i += n
                time.sleep(0.0005)
        else:
            os.write(master, data)

    def save_stats() -> None:
        if stats_path:
            write_atomic(stats_path, json.dumps(asdict(device.stats)))

    parent = os.getppid()
    try:
        write(device.announce())
        while True:
            ready, _, _ = select.select([master], [], [], 1.0)
            if os.getppid() != parent:
                return  # orphaned: the test or CLI that started us is gone
            if not ready:
                continue
            try:
                data = os.read(master, 4096)
            except OSError:
                time.sleep(0.05)
                continue
            for reply in device.feed(device.mangle(data)):
                if faults.delay:
                    time.sleep(faults.delay)
                write(reply)
            save_stats()
    finally:
        save_stats()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tinydeploy.device.sim",
                                description="Simulated tinydeploy board on a pseudo-terminal")
    p.add_argument("model", help=".tflite model the board runs")
    p.add_argument("--corrupt", type=float, default=0.0, help="P(byte flipped), both ways")
    p.add_argument("--drop", type=float, default=0.0, help="P(byte lost), both ways")
    p.add_argument("--split", action="store_true", help="write replies in small slow pieces")
    p.add_argument("--reset-after", type=int, default=None, help="reboot after K inferences")
    p.add_argument("--delay", type=float, default=0.0, help="seconds before every reply")
    p.add_argument("--infer-delay", type=float, default=0.0,
                   help="seconds every inference takes")
    p.add_argument("--wrong-outputs", type=float, default=0.0,
                   help="fraction of samples with one output off by 1 LSB")
    p.add_argument("--float-offset", type=float, default=0.0,
                   help="added to every value of every float output")
    p.add_argument("--defect", default="",
                   help="compute like a TFLM library with this known defect "
                        "(tflm_overrides, e.g. fc_per_channel)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stats", default=None, help="write counters (JSON) to this file")
    p.add_argument("--max-payload", type=int, default=MAX_PAYLOAD,
                   help="largest frame payload (bytes) the board takes and sends")
    a = p.parse_args(argv)
    faults = Faults(a.corrupt, a.drop, a.split, a.reset_after, a.delay, a.infer_delay,
                    a.wrong_outputs, a.float_offset, defect=a.defect, seed=a.seed)
    # a board, not the user's command: its own INFO (e.g. building a stand-in reference)
    # would land on the user's terminal past their -q; warnings and errors still do
    logging.getLogger("tinydeploy").setLevel(logging.WARNING)
    serve(a.model, faults, a.stats, a.max_payload)


class SimProcess(PtyProcess):
    """A running ``python -m tinydeploy.device.sim`` child; ``port`` is its pseudo-terminal."""

    def __init__(self, proc: subprocess.Popen[bytes], port: str, stats_path: str,
                 tmpdir: tempfile.TemporaryDirectory[str]) -> None:
        super().__init__(proc, port)
        self.stats_path = stats_path
        self._tmpdir = tmpdir

    def stats(self) -> dict[str, Any]:
        """The board's counters (invocations, cached_replies, resets, wrong, errors_sent)."""
        try:
            return json.loads(Path(self.stats_path).read_text())
        except (OSError, ValueError):
            return asdict(SimStats())

    def close(self) -> None:
        super().close()
        self._tmpdir.cleanup()


def start_sim(model: str | Path | bytes | ModelFacts, *, corrupt: float = 0.0,
              drop: float = 0.0, split: bool = False, reset_after: int | None = None,
              delay: float = 0.0, infer_delay: float = 0.0, wrong_outputs: float = 0.0,
              float_offset: float = 0.0, seed: int = 0, defect: str = "",
              max_payload: int = MAX_PAYLOAD) -> SimProcess:
    """Launch the simulated board and wait for its ``PTY`` line."""
    tmpdir = tempfile.TemporaryDirectory(prefix="tinydeploy-sim-")
    if isinstance(model, str | Path):
        path = str(model)
        if not Path(path).is_file():
            tmpdir.cleanup()
            raise TinyDeployError("file_not_found", what="model", path=path)
    else:
        path = os.path.join(tmpdir.name, "model.tflite")
        Path(path).write_bytes(load(model).data)
    stats_path = os.path.join(tmpdir.name, "stats.json")
    cmd = [sys.executable, "-m", "tinydeploy.device.sim", path, "--corrupt", str(corrupt),
           "--drop", str(drop), "--delay", str(delay), "--infer-delay", str(infer_delay),
           "--wrong-outputs", str(wrong_outputs),
           "--float-offset", repr(float(float_offset)), "--seed", str(seed),
           "--stats", stats_path, "--max-payload", str(max_payload)]
    if defect:
        cmd += ["--defect", defect]
    if split:
        cmd.append("--split")
    if reset_after is not None:
        cmd += ["--reset-after", str(reset_after)]
    try:
        proc, port = spawn(cmd, START_TIMEOUT, "sim", "the simulator")
    except BaseException:
        tmpdir.cleanup()
        raise
    return SimProcess(proc, port, stats_path, tmpdir)


if __name__ == "__main__":
    main()
