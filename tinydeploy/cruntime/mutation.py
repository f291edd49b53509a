"""Byte-mutation fuzzing of the C generator: a corrupted ``.tflite`` gets one clean error,
or C that compiles and runs clean under AddressSanitizer and UndefinedBehaviorSanitizer.

Each mutant is a seed model with 1-4 bytes flipped or overwritten (``mutate``, seeded).
It goes through ``load``, ``check`` and the C generator (``generate_c``, what
``tinydeploy generate --runtime c --board native`` runs, without the TFLM arena estimate
that only adds a number to ``memory.json``). Anything but a ``TinyDeployError`` or a
success is a bug. An accepted mutant is compiled with ``-fsanitize=address,undefined``
against a kernel library built once (``SanitizedBuild``) and run on a few inputs
(extremes and random values): a sanitizer report, a crash or a non-zero exit is a bug.
Mutants whose generated C is the same up to comments and the model hash (a renamed tensor,
an edited description) are compiled once.

``run_campaign`` does all of it and returns a ``Campaign`` (counts, refusal codes, bugs);
``tests/test_mutated_models.py`` runs 1,000 mutants, ``benchmarks/mutate_models.py`` more.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import subprocess
import tempfile
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import TinyDeployError
from ..facts import ModelFacts, load
from ..resources import firmware_dir
from .codegen import MODEL_SOURCES, generate_c
from .graph import Graph, read_graph
from .harness import STRICT_FLAGS, compiler

__all__ = ["Campaign", "Examiner", "Finding", "SanitizedBuild", "int32_wrap_layers", "mutate",
           "run_campaign", "seed_models"]

SANITIZE = ("-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer")
# the kernels are optimized as in a real build; td_model.c (data and calls) compiles faster
# without optimization
KERNEL_OPT, MODEL_OPT = "-O1", "-O0"
SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:exitcode=86",
                 "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=87"}
INTERESTING = (0x00, 0x01, 0x7F, 0x80, 0xFF)
KERNEL_SOURCES = tuple(s for s in MODEL_SOURCES if s != "td_model.c")

# model-independent (compiled once): the I/O sizes come from td_model_describe and must
# equal argv[1] / argv[2] (the graph's); the buffers are malloc'd to the byte (ASan)
SANITIZER_MAIN = r"""/* tinydeploy mutation harness: describe, reset, run every sample on stdin. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "td_model_api.h"

static size_t td_bytes(const td_tensor_info *t, uint32_t n) {
  size_t total = 0;
  uint32_t k, d;
  for (k = 0; k < n; ++k) {
    const uint8_t dt = t[k].dtype;
    size_t size = dt == TD_DTYPE_FLOAT32 || dt == TD_DTYPE_INT32 ? 4 : dt == TD_DTYPE_INT16 ? 2 : 1;
    for (d = 0; d < t[k].ndims; ++d) size *= (size_t)t[k].dims[d];
    total += size;
  }
  return total;
}

int main(int argc, char **argv) {
  td_info info;
  size_t in_bytes, out_bytes;
  int8_t *in, *out;
  int rc = 0;
  if (argc != 3) return 5;
  memset(&info, 0, sizeof info);
  td_model_describe(&info);
  in_bytes = td_bytes(info.inputs, info.num_inputs);
  out_bytes = td_bytes(info.outputs, info.num_outputs);
  if (in_bytes != strtoul(argv[1], NULL, 10) || out_bytes != strtoul(argv[2], NULL, 10)) {
    fprintf(stderr, "describe: %lu input / %lu output bytes\n", (unsigned long)in_bytes,
            (unsigned long)out_bytes);
    return 4;
  }
  in = (int8_t *)malloc(in_bytes);
  out = (int8_t *)malloc(out_bytes);
  if (in == NULL || out == NULL) return 6;
  td_reset();
  while (rc == 0 && fread(in, 1, in_bytes, stdin) == in_bytes) {
    if (td_invoke(in, out) != 0) rc = 2;
    else if (fwrite(out, 1, out_bytes, stdout) != out_bytes) rc = 3;
  }
  free(in);
  free(out);
  return rc;
}
"""


def seed_models(folders: Iterable[Path], max_bytes: int = 20_000) -> list[Path]:
    """The ``.tflite`` files of ``folders`` (and their sub-folders) up to ``max_bytes``
    each (small models: the mutations hit their structure rather than their weights)."""
    found = {p.resolve() for d in folders if Path(d).is_dir()
             for p in Path(d).rglob("*.tflite") if p.stat().st_size <= max_bytes}
    return sorted(found, key=lambda p: (p.name, str(p)))


def mutate(data: bytes, rng: random.Random, max_edits: int = 4) -> bytes:
    """``data`` with 1..max_edits bytes changed: a bit flipped, a random byte, or one of
    0x00/0x01/0x7f/0x80/0xff (sizes, counts and offsets at their edges)."""
    out = bytearray(data)
    for _ in range(rng.randint(1, max_edits)):
        pos = rng.randrange(len(out))
        kind = rng.random()
        if kind < 0.4:
            out[pos] ^= 1 << rng.randrange(8)
        elif kind < 0.7:
            out[pos] = rng.randrange(256)
        else:
            out[pos] = rng.choice(INTERESTING)
    return bytes(out)


@dataclass
class Finding:
    """A bug: a traceback, a failed compile, a crash or a sanitizer report."""

    source: str  # seed model file name
    index: int  # mutant number in the campaign
    stage: str  # load, check, generate, compile, run
    detail: str  # exception and where it was raised, or the sanitizer's first lines
    data: bytes = field(repr=False, default=b"")

    def save(self, folder: Path) -> Path:
        """Write the mutant as ``folder/mutant_<index>_<source>.tflite``; return the path."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"mutant_{self.index}_{Path(self.source).stem}.tflite"
        path.write_bytes(self.data)
        return path


@dataclass
class Campaign:
    """Counts of one mutation campaign."""

    mutants: int = 0
    load_refused: int = 0  # unreadable flatbuffer (bad_flatbuffer)
    check_accepted: int = 0  # check passed (the generator still decides on its own)
    generated: int = 0  # generate --runtime c produced C
    check_refused_generated: int = 0  # check refused, the C generator accepted (its guard)
    refused: Counter[str] = field(default_factory=Counter)  # generator refusals by code
    compiled: int = 0  # distinct generated C compiled with the sanitizers
    too_large: int = 0  # accepted, but arena + I/O above the run limit: not compiled
    runs: int = 0  # inputs run through compiled mutants
    bugs: list[Finding] = field(default_factory=list)
    # UBSan "signed integer overflow" in a kernel's int32 accumulator of a layer whose
    # bias leaves no room for it (``int32_wrap_layers``): TFLM's int32 sum wraps the same
    # way (undefined in C; reported, not counted as bugs)
    wraps: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        codes = ", ".join(f"{k} {v}" for k, v in sorted(self.refused.items()))
        return (f"{self.mutants} mutants in {self.seconds:.1f} s: {self.load_refused} "
                f"unreadable, {self.check_accepted} accepted by check, generate --runtime c "
                f"refused {sum(self.refused.values())} ({codes or '-'}) and accepted "
                f"{self.generated} ({self.check_refused_generated} of them refused by "
                f"check); {self.compiled} distinct C sources compiled with "
                f"ASan/UBSan, {self.runs} inputs run ({self.too_large} too large to run); "
                f"{len(self.bugs)} bugs ({len(self.wraps)} int32 accumulator wraps)")


class SanitizedBuild:
    """The kernel library compiled once with ASan/UBSan (``work/libtd_kernels_san.a``) and
    per-model harness binaries linked against it."""

    def __init__(self, work: Path, cc: str | None = None) -> None:
        self.work = Path(work)
        self.cc = cc or compiler()
        self._lib: Path | None = None
        self._main = self.work / "td_mutation_main.o"

    def library(self) -> Path:
        """Compile the kernel sources (once) into a static library."""
        if self._lib is not None:
            return self._lib
        fw = firmware_dir()
        stub = self.work / "stub"
        stub.mkdir(parents=True, exist_ok=True)
        # td_kernels_lstm.c reads TD_MODEL_HAS_LSTM from td_model.h: compile the kernel in
        # (the archive member is linked only into models that call td_lstm)
        (stub / "td_model.h").write_text("#define TD_MODEL_HAS_LSTM 1\n")
        objs = []
        procs = []
        for src in KERNEL_SOURCES:
            obj = self.work / (Path(src).stem + ".o")
            procs.append(subprocess.Popen(
                [self.cc, *STRICT_FLAGS, *SANITIZE, KERNEL_OPT, f"-I{stub}", f"-I{fw}", "-c",
                 str(fw / src), "-o", str(obj)], stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True))
            objs.append(obj)
        for proc in procs:
            out, _ = proc.communicate(timeout=300)
            if proc.returncode != 0:
                raise RuntimeError(f"kernel library build failed: {out[-2000:]}")
        lib = self.work / "libtd_kernels_san.a"
        subprocess.run(["ar", "rcs", str(lib), *map(str, objs)], check=True, timeout=60)
        main = self.work / "td_mutation_main.c"
        main.write_text(SANITIZER_MAIN)
        self._main = self.work / "td_mutation_main.o"
        proc = subprocess.run([self.cc, *STRICT_FLAGS, *SANITIZE, MODEL_OPT, "-DTD_HAS_RESET",
                               f"-I{fw}", "-c", str(main), "-o", str(self._main)],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"harness build failed: {_tail(proc.stderr)}")
        self._lib = lib
        return lib

    def build(self, model_dir: Path) -> tuple[Path | None, str]:
        """Compile ``model_dir``'s td_model.c with the harness; (binary, "") or (None,
        the compiler's last lines)."""
        lib = self.library()
        exe = model_dir / "td_mutation_harness"
        proc = subprocess.run(
            [self.cc, *STRICT_FLAGS, *SANITIZE, MODEL_OPT, "-DTD_IO_BUFFERS", f"-I{model_dir}",
             f"-I{firmware_dir()}", str(self._main), str(model_dir / "td_model.c"), str(lib),
             "-o", str(exe)], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            return None, _tail(proc.stderr or proc.stdout)
        return exe, ""

    @staticmethod
    def run(exe: Path, blob: bytes, io_bytes: tuple[int, int], timeout: float = 60.0) -> str:
        """Run the harness on ``blob`` (whole samples of ``io_bytes[0]`` bytes; outputs of
        ``io_bytes[1]``); "" if clean, else what went wrong."""
        import os

        try:
            proc = subprocess.run([str(exe), *map(str, io_bytes)], input=blob,
                                  capture_output=True, timeout=timeout,
                                  env={**os.environ, **SANITIZER_ENV})
        except subprocess.TimeoutExpired:
            return f"timeout after {timeout:.0f} s"
        err = proc.stderr.decode("utf-8", "replace")
        if proc.returncode != 0 or "runtime error" in err or "Sanitizer" in err:
            return f"exit {proc.returncode}: {_sanitizer_lines(err)}"
        if len(proc.stdout) * io_bytes[0] != len(blob) * io_bytes[1]:
            return f"wrote {len(proc.stdout)} output bytes for {len(blob)} input bytes"
        return ""


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def _sanitizer_lines(err: str) -> str:
    keep = [ln.strip() for ln in err.splitlines()
            if "runtime error" in ln or "ERROR:" in ln or ln.strip().startswith("#")]
    return " | ".join(keep[:8]) or _tail(err)


def _where(exc: BaseException) -> str:
    """Exception type, message and the innermost tinydeploy frame that raised it."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "tinydeploy" in f.filename]
    frame = frames[-1] if frames else traceback.extract_tb(exc.__traceback__)[-1]
    return (f"{type(exc).__name__}: {str(exc)[:160]} at {Path(frame.filename).name}:"
            f"{frame.lineno} ({frame.name})")


def sample_inputs(g: Graph, rng: np.random.Generator, count: int = 3) -> bytes:
    """``count`` samples of the model's inputs (raw bytes, model order): all minimum, all
    maximum, then random values (float32 inputs: values around +-1000)."""
    samples = []
    for k in range(count):
        parts = []
        for i in g.inputs:
            t = g.t(i)
            if t.dtype == "FLOAT32":
                v = rng.uniform(-1000, 1000, t.size).astype(np.float32)
                v = v if k > 1 else np.full(t.size, (-1e4, 1e4)[k], np.float32)
            else:
                info = np.iinfo({"INT16": np.int16, "INT32": np.int32}.get(t.dtype, np.int8))
                v = (rng.integers(info.min, info.max + 1, t.size) if k > 1 else
                     np.full(t.size, (info.min, info.max)[k])).astype(info.dtype)
            parts.append(v.astype(v.dtype.newbyteorder("<")).tobytes())
        samples.append(b"".join(parts))
    return b"".join(samples)


_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_HASH = re.compile(r"static const uint8_t sha256\[32\] = \{[^}]*\};")


def c_signature(model_dir: Path) -> str:
    """SHA-256 of the generated C without comments, model name and model hash: mutants
    that differ only there compile to the same program."""
    text = (model_dir / "td_model.c").read_text() + (model_dir / "td_model.h").read_text()
    text = _HASH.sub("", _COMMENT.sub("", text))
    text = re.sub(r'td_model_name\[\] = "[^"]*"', "", text)
    return hashlib.sha256(text.encode()).hexdigest()


def generate_one(data: bytes, out_dir: Path) -> tuple[str, str, ModelFacts | None]:
    """(stage reached, detail, facts) for one mutant; stage is ``load`` (bad_flatbuffer),
    ``refused`` (generator refusal; detail = the code), ``generated`` (C in out_dir) or
    ``bug:<stage>`` (detail = the exception)."""
    try:
        facts = load(data)
    except TinyDeployError as exc:
        return "load", exc.code, None
    except Exception as exc:  # noqa: BLE001 - a traceback is what we are looking for
        return "bug:load", _where(exc), None
    try:
        from ..guard import check

        check(facts)
        checked = "accepted"
    except TinyDeployError:
        checked = "refused"
    except Exception as exc:  # noqa: BLE001
        return "bug:check", _where(exc), facts
    try:
        generate_c(facts, out_dir, name="mutant", tflm_arena=False)
    except TinyDeployError as exc:
        if "\n" in str(exc):
            return "bug:generate", f"multi-line error: {exc!s:.160}", facts
        return f"refused:{checked}", exc.code, facts
    except Exception as exc:  # noqa: BLE001
        return "bug:generate", _where(exc), facts
    return f"generated:{checked}", "", facts


class Examiner:
    """Runs mutants one by one into a :class:`Campaign` (``examine``, then ``finish``):
    distinct accepted C sources are compiled with the sanitizers (``build``) and run on
    ``samples`` inputs, ``jobs`` at a time while the next mutants are generated."""

    def __init__(self, root: Path, build: SanitizedBuild | None = None,
                 compile_c: bool = True, samples: int = 3, max_bytes: int = 64 << 20,
                 seed: int = 0, jobs: int = 2) -> None:
        self.root = Path(root)
        self.build = build or SanitizedBuild(self.root / "lib")
        self.compile_c, self.samples, self.max_bytes = compile_c, samples, max_bytes
        self.rng = np.random.default_rng(seed)
        self.seen: set[str] = set()
        self.camp = Campaign()
        self.jobs = max(1, jobs)
        self.pool = ThreadPoolExecutor(self.jobs)
        self.pending: deque[Future[tuple[Finding | None, bool]]] = deque()

    def examine(self, data: bytes, name: str, k: int) -> None:
        """One mutant (``name``: its seed model, ``k``: its number) into the counts."""
        camp = self.camp
        out_dir = self.root / f"m{k}"
        stage, detail, facts = generate_one(data, out_dir)
        camp.mutants += 1
        camp.check_accepted += stage.endswith(":accepted")
        if stage == "load":
            camp.load_refused += 1
        elif stage.startswith("refused"):
            camp.refused[detail] += 1
        elif stage.startswith("bug:"):
            camp.bugs.append(Finding(name, k, stage[4:], detail, data))
        else:
            camp.generated += 1
            camp.check_refused_generated += stage.endswith(":refused")
            if self.compile_c and facts is not None and \
                    self._submit(facts, out_dir, Finding(name, k, "", "", data)):
                return  # the job removes out_dir
        _remove(out_dir)

    def finish(self) -> Campaign:
        """Wait for the compile-and-run jobs; the campaign with their findings."""
        while self.pending:
            self._collect(self.pending.popleft())
        self.pool.shutdown()
        return self.camp

    def _collect(self, job: Future[tuple[Finding | None, bool]]) -> None:
        found, wrap = job.result()
        if found is not None:
            (self.camp.wraps if wrap else self.camp.bugs).append(found)

    def _submit(self, facts: ModelFacts, out_dir: Path, mutant: Finding) -> bool:
        """Queue the compile and run of a new C source; False if it is not run (already
        seen, or too large)."""
        sig = c_signature(out_dir)
        if sig in self.seen:
            return False
        self.seen.add(sig)
        memory = json.loads((out_dir / "memory.json").read_text())
        g = read_graph(facts)
        sizes = (sum(g.t(i).nbytes for i in g.inputs), sum(g.t(i).nbytes for i in g.outputs))
        if memory["arena_bytes"] + sum(sizes) * (self.samples + 1) > self.max_bytes:
            self.camp.too_large += 1
            return False
        self.camp.compiled += 1
        self.camp.runs += self.samples
        blob = sample_inputs(g, self.rng, self.samples)
        while len(self.pending) >= 4 * self.jobs:
            self._collect(self.pending.popleft())
        self.pending.append(self.pool.submit(self._job, out_dir, mutant, blob, sizes,
                                             bool(int32_wrap_layers(g))))
        return True

    def _job(self, out_dir: Path, mutant: Finding, blob: bytes, sizes: tuple[int, int],
             wrap_prone: bool) -> tuple[Finding | None, bool]:
        """Compile and run one source (in a worker thread): (the finding or None, whether
        it is only an int32 accumulator wrap of a layer whose bias leaves no room)."""
        try:
            exe, err = self.build.build(out_dir)
            if exe is None:
                return replace(mutant, stage="compile", detail=err), False
            problem = self.build.run(exe, blob, sizes)
            if not problem:
                return None, False
            return (replace(mutant, stage="run", detail=problem),
                    wrap_prone and _only_overflow(problem))
        finally:
            _remove(out_dir)


def run_campaign(models: list[Path], count: int, seed: int, work: Path | None = None,
                 compile_c: bool = True, samples: int = 3, max_bytes: int = 64 << 20,
                 progress: Callable[[int, Campaign], None] | None = None,
                 build: SanitizedBuild | None = None, jobs: int = 2) -> Campaign:
    """Mutate ``count`` times (seed models round robin, ``seed``), generate, and compile +
    run every distinct accepted C source under the sanitizers (``compile_c``).

    Args:
        models: seed ``.tflite`` files; count: mutants; seed: the campaign's seed.
        work: folder for generated sources and binaries (default: a temporary one).
        compile_c: compile and run accepted mutants (else only the generator is tried).
        samples: inputs per compiled mutant.
        max_bytes: mutants whose arena plus inputs and outputs exceed this many bytes are
            counted (``too_large``), not compiled.
        progress: called as ``progress(k, campaign)`` after each mutant.
        build: a ``SanitizedBuild`` to reuse (its kernel library is built once).
        jobs: compile-and-run jobs at a time (threads running the compiler).

    Returns:
        The :class:`Campaign`; ``bugs`` hold each bug's mutant bytes.
    """
    if not models:
        raise ValueError("no seed models")
    start = time.monotonic()
    rng = random.Random(seed)
    seeds = [(p.name, p.read_bytes()) for p in models]
    with tempfile.TemporaryDirectory(prefix="td-mutate-") as tmp:
        ex = Examiner(Path(work) if work is not None else Path(tmp), build, compile_c,
                      samples, max_bytes, seed, jobs)
        for k in range(count):
            name, original = seeds[k % len(seeds)]
            ex.examine(mutate(original, rng), name, k)
            if progress is not None:
                progress(k, ex.camp)
        camp = ex.finish()
    camp.seconds = time.monotonic() - start
    return camp


def _only_overflow(problem: str) -> bool:
    """Every runtime error a signed overflow in a kernel's int32 arithmetic."""
    errors = [ln for ln in problem.split(" | ") if "runtime error" in ln]
    return bool(errors) and all("td_kernels" in ln and "signed integer overflow" in ln
                                and "type 'int'" in ln for ln in errors)


def int32_wrap_layers(g: Graph) -> list[int]:
    """The int8 convolutions / FC layers whose int32 bias plus the largest accumulator any
    input gives (256 x sum |w| per channel) leaves int32: their sums may wrap."""
    found = []
    for op in g.ops:
        if op.name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") \
                or len(op.inputs) < 3 or op.inputs[2] < 0:
            continue
        x, w, b = (g.t(i) for i in op.inputs[:3])
        if x.dtype != "INT8" or b.dtype != "INT32" or w.data is None or b.data is None:
            continue
        wv = np.abs(np.asarray(w.data, dtype=np.int64)) + abs(w.zp)
        rows = wv.reshape(-1, b.size).T if op.name == "DEPTHWISE_CONV_2D" \
            else wv.reshape(b.size, -1)
        bound = np.abs(b.data.astype(np.int64).reshape(-1)) + 256 * rows.sum(axis=1)
        if int(bound.max(initial=0)) >= 1 << 31:
            found.append(op.index)
    return found


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
