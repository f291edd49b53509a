"""The host reference (TFLM's Python interpreter, reference kernels) in a worker process.

Some models crash the interpreter itself (e.g. a DEPTHWISE_CONV_2D without bias segfaults
tflite-micro 0.dev20261023), so it runs in a child process: :class:`HostRef` sends a model
and its samples, the child answers with the outputs or with why TFLM refused the model
(its Prepare message); a child that dies is reported as a crash and restarted.
"""

from __future__ import annotations

import pickle
import struct
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

__all__ = ["HostRef", "HostResult"]

ARENA = 4 << 20


@dataclass
class HostResult:
    """``outputs`` (per sample, per output tensor) or ``refused`` (TFLM's reason) or
    ``crashed`` (the interpreter died)."""

    outputs: list[list[np.ndarray]] | None = None
    refused: str = ""
    crashed: bool = False


def _send(stream: BinaryIO, obj: Any) -> None:
    blob = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<I", len(blob)) + blob)
    stream.flush()


def _recv(stream: BinaryIO) -> Any:
    head = stream.read(4)
    if len(head) < 4:
        raise EOFError
    (n,) = struct.unpack("<I", head)
    blob = stream.read(n)
    if len(blob) < n:
        raise EOFError
    return pickle.loads(blob)


def run_model(data: bytes, samples: list[list[np.ndarray]], n_out: int) -> dict[str, Any]:
    """Run in this process (a reset before each sample): {"outputs": ...} or
    {"refused": message}."""
    from tflite_micro.python.tflite_micro import runtime

    from ..hostref import capture_fd2

    box: dict[str, Any] = {}

    def make() -> None:
        try:
            box["it"] = runtime.Interpreter.from_bytes(data, arena_size=ARENA)
        except Exception as exc:  # TFLM's Prepare (or the flatbuffer check) refused it
            box["err"] = f"{type(exc).__name__}: {exc}"

    log = capture_fd2(make)
    if "it" not in box:
        lines = [ln for ln in log.splitlines() if ln.strip()]
        return {"refused": " | ".join(lines[-3:]) or box.get("err", "refused")}
    it = box["it"]
    outs = []
    try:
        for k, sample in enumerate(samples):
            if k:
                it.reset()
            for i, x in enumerate(sample):
                it.set_input(x, i)
            it.invoke()
            outs.append([np.array(it.get_output(j)) for j in range(n_out)])
    except Exception as exc:
        return {"refused": f"invoke: {type(exc).__name__}: {exc}"}
    return {"outputs": outs}


class HostRef:
    """A persistent worker running :func:`run_model`."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.crashes = 0

    def _start(self) -> subprocess.Popen[bytes]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([sys.executable, "-m", "tinydeploy.fuzz.host"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        return self.proc

    def run(self, data: bytes, samples: list[list[np.ndarray]], n_out: int = 1) -> HostResult:
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            _send(proc.stdin, (data, samples, n_out))
            reply = _recv(proc.stdout)
        except (EOFError, BrokenPipeError, OSError):
            proc.wait()
            self.crashes += 1
            self.proc = None
            return HostResult(crashed=True)
        if "refused" in reply:
            return HostResult(refused=str(reply["refused"]))
        return HostResult(outputs=reply["outputs"])

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> HostRef:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints must not corrupt the reply stream
    while True:
        try:
            data, samples, n_out = _recv(stdin)
        except EOFError:
            return
        _send(stdout, run_model(data, samples, n_out))


if __name__ == "__main__":
    _serve()
