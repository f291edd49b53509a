"""Benchmark: `tinydeploy carray --xxd` vs Debian's `xxd -i` on a 1 MB random file.

Prints the median wall time of each (same run, interleaved) and the ratio
tinydeploy / xxd (target <= 1.0). Two tinydeploy figures: the API call in this process
(read + format + atomic write), and a fresh Python process running the same call (adds
interpreter start-up, the fair comparison with spawning xxd). Usage:
``python benchmarks/carray.py [--size BYTES] [--runs N]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tinydeploy.c_array import carray


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=1 << 20)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    xxd = shutil.which("xxd")
    if xxd is None:
        sys.exit("xxd not found (apt install xxd)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "model.bin").write_bytes(os.urandom(args.size))
        code = ("from tinydeploy.c_array import carray; "
                "carray('model.bin', 'py_sub.h', xxd=True)")

        def run_xxd() -> None:
            subprocess.run([xxd, "-i", "model.bin", "xxd.h"], cwd=work, check=True)

        def run_api() -> None:
            cwd = os.getcwd()
            os.chdir(work)
            try:
                carray("model.bin", "py.h", xxd=True)
            finally:
                os.chdir(cwd)

        def run_proc() -> None:
            subprocess.run([sys.executable, "-c", code], cwd=work, check=True)

        times: dict[str, list[float]] = {"xxd": [], "api": [], "proc": []}
        for _ in range(args.runs):
            times["xxd"].append(_timed(run_xxd))
            times["api"].append(_timed(run_api))
            times["proc"].append(_timed(run_proc))
        same = (work / "xxd.h").read_bytes() == (work / "py.h").read_bytes() \
            == (work / "py_sub.h").read_bytes()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"file: {args.size} random bytes, median of {args.runs} runs, outputs identical: {same}")
    print(f"xxd -i              {med['xxd'] * 1e3:8.1f} ms")
    print(f"carray (API)        {med['api'] * 1e3:8.1f} ms   ratio {med['api'] / med['xxd']:.2f}")
    print(f"carray (new python) {med['proc'] * 1e3:8.1f} ms   ratio {med['proc'] / med['xxd']:.2f}")
    print(f"ratio carray/xxd = {med['api'] / med['xxd']:.2f} (target <= 1.0)")
    if not same:
        sys.exit("outputs differ")


if __name__ == "__main__":
    main()
