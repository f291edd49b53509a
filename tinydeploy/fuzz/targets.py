"""Run many generated C models per process: the portable build on this machine (host gcc,
``-DTD_PORTABLE``) and the DSP build on qemu-cm4 (arm-none-eabi-gcc, QEMU mps2-an386).

The kernel sources are compiled once per flavour into objects (:mod:`tinydeploy.objcache`,
keyed by the preprocessed sources and flags); per model only its ``td_model.c`` is
compiled, inside a wrapper that renames its public symbols (``td_invoke`` ->
``fz_m<k>_invoke``, ...) and carries its input samples. One program (native) or firmware
image (qemu-cm4) then runs every model of a batch on every sample, calling ``td_reset()``
first, and writes ``FZ`` + the case number, then per sample the return code and the raw
output bytes. A crashing or hanging model is found from the last case header written; the
batch resumes after it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..cruntime.codegen import MODEL_SOURCES
from ..cruntime.emit_ext import sigmoid_table_decl
from ..errors import TinyDeployError
from ..install_hints import ARM_QEMU, C_COMPILER
from ..objcache import compile_objects
from ..output import write_atomic
from ..resources import firmware_dir

__all__ = ["FLAVOURS", "Case", "Flavour", "run_cases"]

CASE_H = """/* tinydeploy fuzz: one generated model and its samples */
#ifndef FZ_CASE_H
#define FZ_CASE_H
#include <stdint.h>
typedef struct {
  int (*invoke)(const int8_t *in, int8_t *out);
  void (*reset)(void);
  uint32_t in_bytes, out_bytes, samples;
  const uint8_t *inputs; /* samples x in_bytes */
} fz_case;
#endif
"""

MAIN_C = r"""/* tinydeploy fuzz runner: every case, every sample -> "FZ" k, then rc + outputs. */
#include <stdint.h>
#include <string.h>
#include "fz_case.h"

extern const fz_case *const fz_cases[];
extern const uint32_t fz_num_cases;
extern uint64_t fz_in_buf[];
extern uint64_t fz_out_buf[];

#ifdef FZ_CM4
#include "cm4.h"
extern const uint32_t fz_first;
static void fz_put(const void *p, uint32_t n) { cm4_uart_write((const uint8_t *)p, n); }
static void fz_flush(void) {}
static void fz_exit(void) {
  register uint32_t r0 __asm("r0") = 0x18u;    /* SYS_EXIT */
  register uint32_t r1 __asm("r1") = 0x20026u; /* ADP_Stopped_ApplicationExit */
  __asm volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
  for (;;) {
  }
}
#else
#include <stdio.h>
#include <stdlib.h>
static void fz_put(const void *p, uint32_t n) { (void)fwrite(p, 1, n, stdout); }
static void fz_flush(void) { (void)fflush(stdout); }
#endif

static void fz_run(uint32_t k) {
  const fz_case *c = fz_cases[k];
  const uint8_t head[4] = {'F', 'Z', (uint8_t)(k & 0xFFu), (uint8_t)(k >> 8)};
  uint32_t s;
  fz_put(head, 4);
  fz_flush();
  for (s = 0; s < c->samples; ++s) {
    int8_t rc;
    memcpy(fz_in_buf, c->inputs + s * c->in_bytes, c->in_bytes);
    memset(fz_out_buf, 0x5A, c->out_bytes);
    c->reset();
    rc = (int8_t)c->invoke((const int8_t *)fz_in_buf, (int8_t *)fz_out_buf);
    fz_put(&rc, 1);
    fz_put(fz_out_buf, c->out_bytes);
  }
  fz_flush();
}

#ifdef FZ_CM4
int main(void) {
  uint32_t k;
  cm4_uart_init();
  for (k = fz_first; k < fz_num_cases; ++k) fz_run(k);
  fz_put("FZEND!", 6);
  fz_exit();
  return 0;
}
#else
int main(int argc, char **argv) {
  uint32_t k = argc > 1 ? (uint32_t)atol(argv[1]) : 0u;
  for (; k < fz_num_cases; ++k) fz_run(k);
  fz_put("FZEND!", 6);
  fz_flush();
  return 0;
}
#endif
"""

RENAMED = ("td_invoke", "td_reset", "td_model_describe", "td_model_name", "td_sigmoid_table",
           "td_input", "td_output")
STRICT = ("-std=c99", "-Wall", "-Wextra", "-Werror")


@dataclass
class Case:
    """One model to run: generated ``td_model.c``/``.h`` texts, all samples' input bytes
    (concatenated), the input/output bytes of one sample and a size estimate."""

    key: int
    texts: dict[str, str]
    inputs: bytes
    samples: int
    in_bytes: int
    out_bytes: int
    flash: int = 0
    ram: int = 0
    macs: int = 0


@dataclass(frozen=True)
class Flavour:
    """A build: compiler, flags, kernel optimisation, model optimisation, per-image limits."""

    name: str
    cc: str
    flags: tuple[str, ...]
    kernel_opt: str
    model_opt: str
    max_cases: int
    max_flash: int
    max_ram: int


_CM4 = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft", "-ffunction-sections",
        "-fdata-sections")
FLAVOURS = {
    "native": Flavour("native", "gcc", (*STRICT, "-DTD_PORTABLE"), "-O2", "-O1", 120,
                      1 << 40, 1 << 40),
    "qemu-cm4": Flavour("qemu-cm4", "arm-none-eabi-gcc", (*STRICT, *_CM4, "-DFZ_CM4"),
                        "-O2", "-Os", 160, 3 << 20, 3 << 20),
}
CM4_SOURCES = ("cm4_startup.c", "cm4_uart.c", "cm4_timer.c")
LDFLAGS_CM4 = ("--specs=nano.specs", "-nostartfiles", "-Wl,--gc-sections")
QEMU = "qemu-system-arm"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise TinyDeployError("tool_missing", tool=name,
                              fix=C_COMPILER if name in ("gcc", "cc") else ARM_QEMU)
    return path


def _cc(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def kernel_objects(fl: Flavour, cache: Path, fw: Path) -> list[Path]:
    """The kernel (and board support) objects of a flavour from the sources in ``fw``, from
    the object cache (:mod:`tinydeploy.objcache`: compiled once per content and flags)."""
    kernels = [fw / f for f in MODEL_SOURCES if f != "td_model.c"]
    board = [fw / "cm4" / f for f in CM4_SOURCES] if fl.name == "qemu-cm4" else []
    # td_kernels_lstm.c compiles its kernel only for models with an LSTM (td_model.h says
    # so): the library always has it (the case table defines td_sigmoid_table)
    inc = cache / "include"
    inc.mkdir(parents=True, exist_ok=True)
    header = "#ifndef TD_MODEL_H\n#define TD_MODEL_H\n#define TD_MODEL_HAS_LSTM 1\n#endif\n"
    with contextlib.suppress(OSError):
        if (inc / "td_model.h").read_text() == header:
            header = ""  # unchanged: objcache remembers the keys of unchanged folders
    if header:
        write_atomic(inc / "td_model.h", header)
    cc = _tool(fl.cc)
    base = [*fl.flags, f"-I{inc}", f"-I{fw}", f"-I{fw / 'cm4'}"]

    def run(cmd: list[str], what: str) -> subprocess.CompletedProcess[str]:
        proc = _cc(cmd, cache)
        if proc.returncode:
            raise TinyDeployError("build_failed", what=what, rc=proc.returncode,
                                  tail=proc.stderr.strip()[-300:], fix="fix the kernel sources")
        return proc

    def what(src: Path) -> str:
        return f"{fl.cc} ({src.name})"

    objs, _ = compile_objects(cc, kernels, [*base, fl.kernel_opt], run, what)
    board_objs, _ = compile_objects(cc, board, [*base, "-Os"], run, what)
    return [*objs, *board_objs]


def _c_bytes(name: str, data: bytes) -> str:
    body = ",".join(str(b) for b in data) or "0"
    return f"static const uint8_t {name}[{max(len(data), 1)}] = {{{body}}};\n"


def _write_case(d: Path, k: int, c: Case) -> Path:
    sub = d / f"m{k}"
    sub.mkdir(exist_ok=True)
    for name, text in c.texts.items():
        (sub / name).write_text(text)
    p = f"fz_m{k}"
    lines = [f"#define {s} {p}_{s.removeprefix('td_')}" for s in RENAMED]
    src = d / f"{p}.c"
    src.write_text("\n".join([*lines, f'#include "m{k}/td_model.c"', '#include "fz_case.h"',
                              _c_bytes(f"{p}_in", c.inputs),
                              f"const fz_case fz_case_{k} = {{{p}_invoke, {p}_reset, "
                              f"{c.in_bytes}u, {c.out_bytes}u, {c.samples}u, {p}_in}};\n"]))
    return src


def _write_table(d: Path, ids: list[int], cases: list[Case], first: int) -> Path:
    """The case table (the compiled wrappers ``ids``, in order) and the shared buffers."""
    n = len(ids)
    max_in = max(c.in_bytes for c in cases)
    max_out = max(c.out_bytes for c in cases)
    ext = "".join(f"extern const fz_case fz_case_{k};\n" for k in ids)
    ptrs = ", ".join(f"&fz_case_{k}" for k in ids)
    src = d / "fz_table.c"
    src.write_text(
        '#include <stdint.h>\n#include "fz_case.h"\n' + ext
        + f"const fz_case *const fz_cases[{n}] = {{{ptrs}}};\n"
        + f"const uint32_t fz_num_cases = {n}u;\nconst uint32_t fz_first = {first}u;\n"
        + f"uint64_t fz_in_buf[{(max_in + 7) // 8 + 1}];\n"
        + f"uint64_t fz_out_buf[{(max_out + 7) // 8 + 1}];\n"
        + "extern const uint16_t td_sigmoid_table[256];\n" + sigmoid_table_decl() + "\n")
    return src


def _compile_models(fl: Flavour, d: Path, srcs: list[Path], jobs: int, fw: Path
                    ) -> dict[int, str]:
    """Compile the wrappers (``jobs`` compilers at a time); {index: error} of failures."""
    base = [_tool(fl.cc), *fl.flags, fl.model_opt, f"-I{d}", f"-I{fw}", f"-I{fw / 'cm4'}", "-c"]
    chunks = [srcs[i::jobs] for i in range(jobs) if srcs[i::jobs]]
    procs = [subprocess.Popen([*base, *(s.name for s in ch)], cwd=d, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for ch in chunks]
    failed: dict[int, str] = {}
    for ch, proc in zip(chunks, procs, strict=True):
        _, err = proc.communicate(timeout=1200)
        if proc.returncode == 0:
            continue
        for s in ch:  # find the culprits one by one
            one = _cc([*base, s.name], d)
            if one.returncode:
                failed[int(s.stem.split("_m")[1])] = one.stderr.strip()[-400:]
    return failed


def _parse(blob: bytes, cases: list[Case], first: int
           ) -> tuple[dict[int, bytes], int | None, bool]:
    """Outputs per case index from ``first`` on, the index that started but did not finish
    (crash / hang) and whether the end marker was seen."""
    out: dict[int, bytes] = {}
    pos, k = 0, first
    while k < len(cases):
        if blob[pos:pos + 4] != b"FZ" + bytes([k & 0xFF, k >> 8]):
            return out, (k if pos < len(blob) else None), False
        need = cases[k].samples * (1 + cases[k].out_bytes)
        if len(blob) < pos + 4 + need:
            return out, k, False
        out[k] = blob[pos + 4:pos + 4 + need]
        pos += 4 + need
        k += 1
    return out, None, blob[pos:pos + 6] == b"FZEND!"


def _link(fl: Flavour, d: Path, objs: list[Path], lib: list[Path], table: Path, fw: Path
          ) -> Path:
    exe = d / ("fz.elf" if fl.name == "qemu-cm4" else "fz")
    main = d / "fz_main.c"
    main.write_text(MAIN_C)
    extra = [*LDFLAGS_CM4, "-T", str(fw / "cm4" / "cm4.ld")] if fl.name == "qemu-cm4" else []
    proc = _cc([_tool(fl.cc), *fl.flags, "-Os", f"-I{d}", f"-I{fw}", f"-I{fw / 'cm4'}",
                str(main), str(table), *(str(o) for o in [*objs, *lib]), *extra, "-o",
                str(exe)], d)
    if proc.returncode:
        raise TinyDeployError("build_failed", what=f"{fl.cc} (fuzz link)", rc=proc.returncode,
                              tail=proc.stderr.strip()[-400:], fix="report this batch")
    return exe


def _execute(fl: Flavour, exe: Path, d: Path, first: int, timeout: float) -> bytes:
    if fl.name == "native":
        try:
            proc = subprocess.run([str(exe), str(first)], capture_output=True,
                                  timeout=timeout)
            return proc.stdout
        except subprocess.TimeoutExpired as exc:
            return bytes(exc.stdout or b"")
    out = d / f"uart-{first}.bin"
    out.unlink(missing_ok=True)
    cmd = [_tool(QEMU), "-M", "mps2-an386", "-display", "none", "-monitor", "none",
           "-serial", f"file:{out}", "-semihosting-config", "enable=on,target=native",
           "-kernel", str(exe)]
    setpriv = shutil.which("setpriv")
    if setpriv:
        cmd = [setpriv, "--pdeathsig", "TERM", "--", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < end:
            time.sleep(0.05)
            with contextlib.suppress(OSError):  # a fault halts the core: stop waiting
                if out.stat().st_size and b"\ntd-cm4: " in out.read_bytes()[-200:]:
                    break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    return out.read_bytes() if out.exists() else b""


def run_cases(cases: list[Case], flavour: str, work: Path, jobs: int = 2,
              times: dict[str, float] | None = None, firmware: Path | None = None
              ) -> dict[int, bytes | str]:
    """Run every case on ``flavour``: {case key: raw output (per sample: rc byte + output
    bytes) or an error ('compile: ...', 'crash', 'timeout')}. ``times``: seconds spent
    compiling, linking and running are added to it; ``firmware``: the kernel sources
    (default: tinydeploy's)."""
    fl = FLAVOURS[flavour]
    fw = Path(firmware) if firmware is not None else firmware_dir()
    times = times if times is not None else {}

    def clock(key: str, t0: float) -> None:
        times[key] = times.get(key, 0.0) + time.monotonic() - t0

    work = Path(work)
    lib = kernel_objects(fl, work.parent / "fuzz-lib", fw)
    results: dict[int, bytes | str] = {}
    for group in _groups(fl, cases):
        d = work / f"b{group[0].key}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        (d / "fz_case.h").write_text(CASE_H)
        t0 = time.monotonic()
        srcs = [_write_case(d, k, c) for k, c in enumerate(group)]
        failed = _compile_models(fl, d, srcs, jobs, fw)
        clock(f"{flavour} compile", t0)
        for k, err in failed.items():
            results[group[k].key] = "compile: " + err
        ok = [k for k in range(len(group)) if k not in failed]
        if not ok:
            continue
        live = [group[k] for k in ok]
        objs = [d / f"fz_m{k}.o" for k in ok]
        first = 0
        while first < len(live):
            t0 = time.monotonic()
            table = _write_table(d, ok, live, first)
            exe = _link(fl, d, objs, lib, table, fw)
            clock(f"{flavour} link", t0)
            macs = sum(c.macs * c.samples for c in live[first:])
            timeout = 20.0 + macs / (2e6 if fl.name == "qemu-cm4" else 5e7)
            t0 = time.monotonic()
            blob = _execute(fl, exe, d, first, timeout)
            clock(f"{flavour} run", t0)
            got, bad, _ = _parse(blob, live, first)
            for k, v in got.items():
                results[live[k].key] = v
            if bad is None and len(got) + first >= len(live):
                break
            if bad is None:  # nothing started: the whole remainder failed
                bad = first + len(got)
            results[live[bad].key] = "crash" if b"td-cm4: " in blob[-200:] or \
                fl.name == "native" else "timeout"
            first = bad + 1
    return results


def _groups(fl: Flavour, cases: list[Case]) -> list[list[Case]]:
    groups: list[list[Case]] = []
    cur: list[Case] = []
    flash = ram = 0
    for c in cases:
        if cur and (len(cur) >= fl.max_cases or flash + c.flash > fl.max_flash
                    or ram + c.ram > fl.max_ram):
            groups.append(cur)
            cur, flash, ram = [], 0, 0
        cur.append(c)
        flash += c.flash
        ram += c.ram
    if cur:
        groups.append(cur)
    return groups
