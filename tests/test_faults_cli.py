"""Faults end cleanly: SIGTERM mid-validate removes its temporary folders and writes no
half result; output onto a mount point (another filesystem) is staged on that filesystem;
``--json`` prints an error object on failure."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tinydeploy.device.sim import start_sim

DATA = Path(__file__).parent / "data"
MODEL = DATA / "sine_mlp.tflite"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tinydeploy.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def test_sigterm_mid_validate_leaves_nothing(tmp_path: Path) -> None:
    data = tmp_path / "d.npz"
    x = np.random.default_rng(0).integers(-128, 128, size=(20, 1), dtype=np.int8)
    np.savez(data, x_test=x)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "out"
    with start_sim(MODEL, infer_delay=0.5) as sim:
        proc = _cli("validate", str(MODEL), "--data", str(data), "--port", sim.port,
                    "--out", str(out), env={"TMPDIR": str(tmp)})
        time.sleep(1.0)
        for _ in range(100):  # until its temporary folder exists (the run is under way)
            if any(tmp.iterdir()) or proc.poll() is not None:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert list(tmp.iterdir()) == []
    # samples.csv is the run's progress log (appended per confirmed sample, by design);
    # no verdict or report is left behind
    assert not out.exists() or {p.name for p in out.iterdir()} <= {"samples.csv"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_json_error_object(tmp_path: Path) -> None:
    proc = _cli("check", str(tmp_path / "missing.tflite"), "--json")
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2
    err = json.loads(stdout)["error"]
    assert err["code"] == "file_not_found" and err["exit_code"] == 2
    assert "missing.tflite" in err["message"] and err["hint"]
    assert stderr.strip().startswith("error:")


@pytest.fixture
def mount_point(tmp_path: Path):  # type: ignore[no-untyped-def]
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_output_onto_a_mount_point(mount_point: Path) -> None:
    (mount_point / "keep.txt").write_text("mine")
    proc = _cli("generate", str(MODEL), "--board", "nano33ble", "--runtime", "c",
                "--out", str(mount_point))
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    names = sorted(p.name for p in mount_point.iterdir())
    assert "keep.txt" in names and len(names) > 2
    assert not [n for n in names if n.startswith(".tinydeploy-stage")]
