"""Simulated board: the device protocol on a pseudo-terminal, the model in the TFLM Python
runtime, with fault injection for testing the link.

    python -m tinydeploy.device.sim MODEL.tflite [--corrupt P] [--drop P] [--split] \
        [--reset-after K] [--delay S] [--wrong-outputs F] [--seed N] [--stats FILE]

prints ``PTY /dev/pts/N`` (like ``td_native_main.c``) and serves until killed.
``start_sim(model, **faults)`` runs it as a child process (a context manager with ``.port``).
"""

from __future__ import annotations

import argparse
import json
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
    INFO_FLAG_BOOT,
    MAX_PAYLOAD,
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
    pack_error,
    pack_info,
    pack_result,
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
    wrong_outputs: float = 0.0  # fraction of samples with one output off by 1 LSB
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
    try:
        text = model.allocations()
    except Exception:  # the runtime may not expose it
        return 0
    m = re.search(r"Arena allocation total (\d+) bytes", text)
    return int(m.group(1)) if m else 0


class SimDevice:
    """The device-side protocol in Python: bytes in -> bytes out, faults applied."""

    def __init__(self, facts: ModelFacts, faults: Faults | None = None) -> None:
        from ..hostref import DEFAULT_ARENA, HostModel

        self.facts = facts
        self.faults = faults or Faults()
        self.rng = random.Random(self.faults.seed)
        self.model = HostModel(facts)
        t_in, t_out = facts.inputs[0], facts.outputs[0]
        self.in_dtype, self.in_shape = t_in.numpy_dtype, t_in.shape
        max_payload = max(MAX_PAYLOAD, t_in.nbytes, t_out.nbytes + RESULT_HEADER)
        self.info = DeviceInfo(
            protocol_version=PROTOCOL_VERSION, firmware_version=f"tinydeploy-sim {__version__}",
            board_id="sim", runtime="sim", model_sha256=facts.sha256, input=_tensor(t_in),
            output=_tensor(t_out), arena_size=DEFAULT_ARENA, arena_used=_arena_used(self.model),
            cpu_hz=0, max_payload=max_payload)
        self.decoder = FrameDecoder(max_payload)
        self.cache: tuple[int, bytes, bytes] | None = None  # seq, input, RESULT payload
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

    def handle(self, frame: Frame) -> bytes:
        if frame.op == Op.HELLO:
            return encode_frame(Op.INFO, frame.seq, pack_info(self.info))
        if frame.op != Op.INFER:
            self.stats.errors_sent += 1
            return encode_frame(Op.ERROR, frame.seq, pack_error(ErrorCode.BAD_COMMAND, frame.op))
        if len(frame.payload) != self.info.input.nbytes:
            self.stats.errors_sent += 1
            return encode_frame(Op.ERROR, frame.seq, pack_error(
                ErrorCode.BAD_LENGTH, frame.op, self.info.input.nbytes))
        if self.cache and self.cache[0] == frame.seq and self.cache[1] == frame.payload:
            self.stats.cached_replies += 1
            return encode_frame(Op.RESULT, frame.seq, self.cache[2])
        f = self.faults
        if f.reset_after is not None and not self.reset_done \
                and self.stats.invocations >= f.reset_after:
            self.reset_done = True
            return b"REBOOT"
        payload = pack_result(self.run(frame.payload))
        self.cache = (frame.seq, frame.payload, payload)
        return encode_frame(Op.RESULT, frame.seq, payload)

    def run(self, data: bytes) -> InferReply:
        x = np.frombuffer(data, dtype=self.in_dtype).reshape(self.in_shape)
        t0 = time.perf_counter()
        y = np.array(self.model.predict_one(x))
        time_us = int((time.perf_counter() - t0) * 1e6)
        index = self.stats.invocations
        self.stats.invocations += 1
        if self.faults.wrong_outputs and self.rng.random() < self.faults.wrong_outputs:
            flat = y.reshape(-1).astype(np.int64)
            k = self.rng.randrange(flat.size)
            info = np.iinfo(y.dtype) if np.issubdtype(y.dtype, np.integer) else None
            step = self.rng.choice((-1, 1))
            if info is not None and not info.min <= flat[k] + step <= info.max:
                step = -step
            flat[k] += step
            y = flat.astype(y.dtype).reshape(y.shape)
            self.stats.wrong.append(index)
        return InferReply(y.tobytes(), time_us, 0)


# --- the process: a pty served by SimDevice -----------------------------------------------
def serve(model: str | Path, faults: Faults, stats_path: str | None = None) -> None:
    device = SimDevice(load(model), faults)
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)  # keep the slave open: reads never EIO while the host reconnects
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

    # SIGTERM from the parent, Ctrl-C (it reaches the whole process group): a quiet exit
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
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
    p.add_argument("--wrong-outputs", type=float, default=0.0,
                   help="fraction of samples with one output off by 1 LSB")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stats", default=None, help="write counters (JSON) to this file")
    a = p.parse_args(argv)
    faults = Faults(a.corrupt, a.drop, a.split, a.reset_after, a.delay, a.wrong_outputs, a.seed)
    serve(a.model, faults, a.stats)


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
              delay: float = 0.0, wrong_outputs: float = 0.0, seed: int = 0) -> SimProcess:
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
           "--drop", str(drop), "--delay", str(delay), "--wrong-outputs", str(wrong_outputs),
           "--seed", str(seed), "--stats", stats_path]
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
