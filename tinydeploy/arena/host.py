"""Host64 measurement: the TFLM Python runtime (64-bit, reference kernels), crash-safe.

Layer 5 of :mod:`tinydeploy.arena` (beside :mod:`.predict` and :mod:`.measure`): the
smallest ``arena_size`` for which ``runtime.Interpreter.from_bytes`` both allocates and
invokes the model (zero input), and the ``RecordingMicroAllocator`` figures of one generous
run. Some sizes just below the minimum segfault the runtime instead of raising, so no trial
runs in this process: a worker child imports the runtime once and forks one grandchild per
trial, whose exit status is the answer (a signal = crash = fail); if the worker itself dies
it is restarted. Search: doubling up / halving down from the used-bytes figure, bisection on
16-byte steps, then a byte-exact scan of the 64 bytes below the edge (the feasible set is
not monotone: persistent allocations are aligned relative to the arena end), and finally
``min`` works and ``min - 1`` fails.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from ..errors import TinyDeployError
from .replay import ALIGN, align_up

# A "zygote" child imports the runtime once, then forks one grandchild per trial; the
# grandchild's exit status is the answer (0 ok, 1 fail, killed by a signal: crash).
_ZYGOTE = r"""
import json, os, signal, sys, tempfile
import numpy as np
from tflite_micro.python.tflite_micro import runtime
data = open(sys.argv[1], "rb").read()

def build(n):
    it = runtime.Interpreter.from_bytes(data, arena_size=n)
    i = 0
    while True:
        try:
            d = it.get_input_details(i)
        except Exception:
            break
        it.set_input(np.zeros(tuple(int(x) for x in d["shape"]), dtype=d["dtype"]), i)
        i += 1
    it.invoke()
    return it

def probe(n):
    signal.alarm(300)  # a hung runtime kills this worker; the parent restarts it
    it = build(n)
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            it.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        signal.alarm(0)
        return tmp.read().decode(errors="replace")

for line in sys.stdin:
    cmd = line.strip()
    if cmd.startswith("probe"):
        try:
            out = {"ok": True, "text": probe(int(cmd.split()[1]))}
        except Exception as exc:
            out = {"ok": False, "text": str(exc)}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
        continue
    n = int(cmd)
    pid = os.fork()
    if pid == 0:
        signal.alarm(60)  # a hung trial dies by SIGALRM and counts as a crash
        code = 1
        try:
            build(n)
            code = 0
        except Exception:
            pass
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        res = "crash"
    else:
        res = "ok" if os.WEXITSTATUS(status) == 0 else "fail"
    sys.stdout.write(res + "\n")
    sys.stdout.flush()
"""


class HostRuntime:
    """A crash-safe session with the TFLM Python runtime for one model (a context
    manager). ``trial(n)`` -> "ok" | "fail" | "crash"; ``probe()`` -> the
    RecordingMicroAllocator text for a 1 MiB arena."""

    def __init__(self, data: bytes) -> None:
        import tempfile

        from .. import tflm_py
        from ..tflm_py import MISSING_FIX, MISSING_TOOL

        if not tflm_py.available():
            raise TinyDeployError("tool_missing", tool=f"{MISSING_TOOL}, which measures "
                                                       "the arena on this machine",
                                  fix="use --target cortex-m (predicted) or --target "
                                      "qemu-cm4 --tflm-src DIR (measured), or " + MISSING_FIX)
        self._dir = tempfile.TemporaryDirectory(prefix="td-arena-")
        self._model = Path(self._dir.name) / "model.tflite"
        self._model.write_bytes(data)
        self._proc: subprocess.Popen[str] | None = None
        self.trials: dict[int, str] = {}

    def _start(self) -> subprocess.Popen[str]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _ZYGOTE, str(self._model)], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        return self._proc

    def _ask(self, cmd: str) -> str:
        for _ in range(3):  # the zygote itself never runs a trial; restart if it died
            proc = self._start()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(cmd + "\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
            except (BrokenPipeError, OSError):
                line = ""
            if line:
                return line.strip()
            self.close_proc()
        raise TinyDeployError("build_failed", what="TFLM Python runtime", rc="?",
                              tail="the runtime worker process keeps dying",
                              fix="check `python -c 'import tflite_micro'`")

    def trial(self, n: int) -> str:
        if n not in self.trials:
            self.trials[n] = self._ask(str(int(n)))
        return self.trials[n]

    def ok(self, n: int) -> bool:
        return self.trial(n) == "ok"

    def probe(self, name: str = "model") -> str:
        """Allocations text of one run with a generous arena (1 MiB, else up to 64 MiB)."""
        import json

        for size in (1 << 20, 1 << 24, 1 << 26):
            reply = json.loads(self._ask(f"probe {size}"))
            if reply["ok"]:
                return str(reply["text"])
        problem = " ".join(reply["text"].split())[:300]
        raise TinyDeployError("model_rejected", path=name,
                              problem=f"the TFLM runtime cannot run it ({problem})",
                              fix="check the model with `tinydeploy check`")

    def close_proc(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None

    def __enter__(self) -> HostRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_proc()
        self._dir.cleanup()


def parse_allocations(text: str) -> dict[str, int]:
    """RecordingMicroAllocator text -> {"total"/"head"/"tail"/bucket name: bytes}."""
    out = {k: int(v) for k, v in re.findall(r"allocation (total|head|tail) (\d+)", text)}
    for name, used in re.findall(r"'([^']+)' used (\d+) bytes", text):
        out[name] = int(used)
    return out


def search_host64(rt: HostRuntime, start: int, limit: int = 1 << 27,
                  name: str = "model") -> int:
    """Smallest arena (byte-exact) that allocates and invokes; min works, min-1 fails."""
    hi = max(64, align_up(start, ALIGN))
    while not rt.ok(hi):
        hi *= 2
        if hi > limit:
            raise TinyDeployError("arena_not_found", limit=limit, path=name)
    lo = hi // 2
    while lo > 0 and rt.ok(lo):
        hi, lo = lo, lo // 2
    while hi - lo > ALIGN:  # coarse bisection on 16-byte steps
        mid = align_up((lo + hi) // 2, ALIGN)
        if mid in (lo, hi):
            break
        lo, hi = (lo, mid) if rt.ok(mid) else (mid, hi)
    best = hi
    for n in range(hi - 1, max(lo, hi - 4 * ALIGN) - 1, -1):  # byte-exact edge scan
        if rt.ok(n):
            best = n
    while rt.ok(best - 1):  # never report a size whose predecessor works
        best -= 1
    if not rt.ok(best):
        raise TinyDeployError("arena_not_found", limit=best, path=name)
    return best
