"""The C protocol core: warning-free builds, a 1M-frame random test under ASan/UBSan, and a
short libFuzzer run (when clang is installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FW = ROOT / "firmware"
CDIR = Path(__file__).resolve().parent / "c"
GCC = shutil.which("gcc")
CLANG = shutil.which("clang")
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
SANITIZE = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]

needs_gcc = pytest.mark.skipif(GCC is None, reason="gcc not installed")


def run(cmd: list[str | Path], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, f"{cmd[0]} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    return res


@needs_gcc
@pytest.mark.parametrize("src", ["td_protocol.c", "td_posix.c", "td_native_main.c"])
def test_c_sources_build_warning_free(src: str, tmp_path: Path) -> None:
    run([GCC, *STRICT, "-I", FW, "-c", FW / src, "-o", tmp_path / "x.o"])


@needs_gcc
def test_core_builds_as_cxx_and_arduino_adapter(tmp_path: Path) -> None:
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not installed")
    stub = tmp_path / "Arduino.h"  # the Stream surface the adapter uses
    stub.write_text(
        "#include <stddef.h>\n#include <stdint.h>\n"
        "class Stream { public: virtual ~Stream() {}\n"
        "  virtual size_t write(const uint8_t *b, size_t n) = 0;\n"
        "  virtual int available() = 0;\n"
        "  size_t readBytes(uint8_t *b, size_t n) { (void)b; return n; } };\n")
    flags = ["-std=c++11", "-Wall", "-Wextra", "-Werror", "-I", tmp_path, "-I", FW]
    run([gxx, *flags, "-x", "c++", "-c", FW / "td_protocol.c", "-o", tmp_path / "p.o"])
    run([gxx, *flags, "-c", FW / "td_arduino.cpp", "-o", tmp_path / "a.o"])


def _driver(tmp_path: Path, max_payload: int) -> Path:
    exe = tmp_path / f"td_fuzz_driver_{max_payload}"
    run([GCC, *STRICT, *SANITIZE, f"-DTD_MAX_PAYLOAD={max_payload}", "-I", FW,
         CDIR / "td_fuzz_driver.c", FW / "td_protocol.c", "-o", exe])
    return exe


@needs_gcc
def test_one_million_random_frames_under_sanitizers(tmp_path: Path) -> None:
    """Valid requests (single-frame and chunked transfers, retries) answered exactly, bad
    ones an ERROR or nothing, resync after garbage."""
    # 64-byte frames: the 80-byte inputs and outputs always travel in chunks; 300k rounds
    # (a request, a whole chunked transfer, or damage + resync) feed over 1M frames
    res = run([_driver(tmp_path, 64), 300_000, 1], timeout=300)
    stats = dict(kv.split("=") for kv in res.stdout.split())
    assert stats["frames"] == "300000" and int(stats["sent"]) >= 1_000_000
    kinds = [int(k) for k in stats["kinds"].split(",")]
    assert len(kinds) == 10 and min(kinds) > 27_000  # every kind of round was exercised
    assert int(stats["infer_calls"]) > 150_000
    assert int(stats["errors"]) > 300_000


@needs_gcc
def test_random_frames_default_payload_size(tmp_path: Path) -> None:
    res = run([_driver(tmp_path, 1024), 30_000, 7], timeout=300)
    assert "frames=30000 " in res.stdout


@pytest.mark.skipif(CLANG is None, reason="clang not installed")
def test_libfuzzer_short_run(tmp_path: Path) -> None:
    exe = tmp_path / "td_libfuzzer"
    run([CLANG, "-g", "-O1", "-fsanitize=fuzzer,address,undefined", "-DTD_MAX_PAYLOAD=256",
         "-I", FW, CDIR / "td_libfuzzer.c", FW / "td_protocol.c", "-o", exe])
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    from tinydeploy.device.protocol import (
        Op,
        crc32,
        encode_frame,
        pack_chunk,
        pack_infer,
        pack_span,
    )

    x = bytes(range(1, 251)) + bytes(50)
    seeds = [encode_frame(Op.HELLO, 1), encode_frame(Op.DATA, 2, pack_chunk(0, x[:200])),
             encode_frame(Op.INFER, 3, pack_infer(1, 200, crc32(x), x[200:])),
             encode_frame(Op.READ, 4, pack_span(100, 200)), encode_frame(Op.INFER, 5, bytes(300)),
             encode_frame(0x77, 6, b"x")]
    for i, seed in enumerate(seeds):
        (corpus / f"seed{i}").write_bytes(seed)
    res = run([exe, "-max_total_time=5", "-max_len=2048", "-timeout=5", "-seed=1",
               f"-artifact_prefix={tmp_path}/", corpus], timeout=120)
    assert "Done" in res.stderr
