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
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import TinyDeployError
from ..facts import ModelFacts, load
from ..resources import firmware_dir
from .codegen import MODEL_SOURCES, generate_c
from .graph import read_graph
from .harness import STRICT_FLAGS, compiler

__all__ = ["Campaign", "Finding", "SanitizedBuild", "mutate", "run_campaign", "seed_models"]

SANITIZE = ("-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer")
SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:exitcode=86",
                 "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=87"}
INTERESTING = (0x00, 0x01, 0x7F, 0x80, 0xFF)
KERNEL_SOURCES = tuple(s for s in MODEL_SOURCES if s != "td_model.c")

# raw samples on stdin (TD_INPUT_BYTES each); describes the model, resets, invokes
SANITIZER_MAIN = r"""/* tinydeploy mutation harness: describe, reset, run every sample on stdin. */
#include <stdio.h>
#include "td_model.h"

int main(void) {
  static int64_t in_store[(TD_INPUT_BYTES + 7) / 8 + 1];
  static int64_t out_store[(TD_OUTPUT_BYTES + 7) / 8 + 1];
  int8_t *in = (int8_t *)in_store, *out = (int8_t *)out_store;
  td_info info = {0};
  td_model_describe(&info);
  if (info.num_inputs != TD_NUM_INPUTS || info.num_outputs != TD_NUM_OUTPUTS) return 4;
  td_reset();
  while (fread(in, 1, TD_INPUT_BYTES, stdin) == (size_t)TD_INPUT_BYTES) {
    if (td_invoke(in, out) != 0) return 2;
    if (fwrite(out, 1, TD_OUTPUT_BYTES, stdout) != (size_t)TD_OUTPUT_BYTES) return 3;
  }
  return 0;
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
    refused: Counter[str] = field(default_factory=Counter)  # generator refusals by code
    compiled: int = 0  # distinct generated C compiled with the sanitizers
    too_large: int = 0  # accepted, but arena + I/O above the run limit: not compiled
    runs: int = 0  # inputs run through compiled mutants
    bugs: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        codes = ", ".join(f"{k} {v}" for k, v in sorted(self.refused.items()))
        return (f"{self.mutants} mutants in {self.seconds:.1f} s: {self.load_refused} "
                f"unreadable, {self.check_accepted} accepted by check, generate --runtime c "
                f"refused {sum(self.refused.values())} ({codes or '-'}) and accepted "
                f"{self.generated}; {self.compiled} distinct C sources compiled with "
                f"ASan/UBSan, {self.runs} inputs run ({self.too_large} too large to run); "
                f"{len(self.bugs)} bugs")


class SanitizedBuild:
    """The kernel library compiled once with ASan/UBSan (``work/libtd_kernels_san.a``) and
    per-model harness binaries linked against it."""

    def __init__(self, work: Path, cc: str | None = None) -> None:
        self.work = Path(work)
        self.cc = cc or compiler()
        self._lib: Path | None = None

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
                [self.cc, *STRICT_FLAGS, *SANITIZE, f"-I{stub}", f"-I{fw}", "-c",
                 str(fw / src), "-o", str(obj)], stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True))
            objs.append(obj)
        for proc in procs:
            out, _ = proc.communicate(timeout=300)
            if proc.returncode != 0:
                raise RuntimeError(f"kernel library build failed: {out[-2000:]}")
        lib = self.work / "libtd_kernels_san.a"
        subprocess.run(["ar", "rcs", str(lib), *map(str, objs)], check=True, timeout=60)
        self._lib = lib
        return lib

    def build(self, model_dir: Path) -> tuple[Path | None, str]:
        """Compile ``model_dir``'s td_model.c with the harness; (binary, "") or (None,
        the compiler's last lines)."""
        lib = self.library()
        main = model_dir / "td_mutation_main.c"
        main.write_text(SANITIZER_MAIN)
        exe = model_dir / "td_mutation_harness"
        proc = subprocess.run(
            [self.cc, *STRICT_FLAGS, *SANITIZE, f"-I{model_dir}", f"-I{firmware_dir()}",
             str(main), str(model_dir / "td_model.c"), str(lib), "-o", str(exe)],
            capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            return None, _tail(proc.stderr or proc.stdout)
        return exe, ""

    @staticmethod
    def run(exe: Path, blob: bytes, timeout: float = 60.0) -> str:
        """Run the harness on ``blob`` (whole samples); "" if clean, else what went wrong."""
        import os

        try:
            proc = subprocess.run([str(exe)], input=blob, capture_output=True,
                                  timeout=timeout, env={**os.environ, **SANITIZER_ENV})
        except subprocess.TimeoutExpired:
            return f"timeout after {timeout:.0f} s"
        err = proc.stderr.decode("utf-8", "replace")
        if proc.returncode != 0 or "runtime error" in err or "Sanitizer" in err:
            return f"exit {proc.returncode}: {_sanitizer_lines(err)}"
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


def sample_inputs(facts: ModelFacts, rng: np.random.Generator, count: int = 3) -> bytes:
    """``count`` samples of the model's inputs (raw bytes, model order): all minimum, all
    maximum, then random values (float32 inputs: values around +-1000)."""
    g = read_graph(facts)
    samples = []
    for k in range(count):
        parts = []
        for i in g.inputs:
            t = g.t(i)
            if t.dtype == "FLOAT32":
                v = rng.uniform(-1000, 1000, t.size).astype(np.float32)
                v = v if k > 1 else np.full(t.size, (-1e4, 1e4)[k], np.float32)
            else:
                info = np.iinfo(np.int16 if t.dtype == "INT16" else np.int8)
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


def run_campaign(models: list[Path], count: int, seed: int, work: Path | None = None,
                 compile_c: bool = True, samples: int = 3, max_bytes: int = 64 << 20,
                 progress: Callable[[int, Campaign], None] | None = None,
                 build: SanitizedBuild | None = None) -> Campaign:
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

    Returns:
        The :class:`Campaign`; ``bugs`` hold each bug's mutant bytes.
    """
    if not models:
        raise ValueError("no seed models")
    start = time.monotonic()
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    seeds = [(p.name, p.read_bytes()) for p in models]
    camp = Campaign()
    seen: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="td-mutate-") as tmp:
        root = Path(work) if work is not None else Path(tmp)
        build = build or SanitizedBuild(root / "lib")
        for k in range(count):
            name, original = seeds[k % len(seeds)]
            data = mutate(original, rng)
            out_dir = root / f"m{k}"
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
                if compile_c and facts is not None:
                    _compile_and_run(build, facts, out_dir, (name, k, data), samples,
                                     max_bytes, nprng, seen, camp)
            _remove(out_dir)
            if progress is not None:
                progress(k, camp)
    camp.seconds = time.monotonic() - start
    return camp


def _compile_and_run(build: SanitizedBuild, facts: ModelFacts, out_dir: Path,
                     mutant: tuple[str, int, bytes], samples: int, max_bytes: int,
                     rng: np.random.Generator, seen: set[str], camp: Campaign) -> None:
    name, k, data = mutant
    sig = c_signature(out_dir)
    if sig in seen:
        return
    memory = json.loads((out_dir / "memory.json").read_text())
    g = read_graph(facts)
    io = sum(g.t(i).nbytes for i in (*g.inputs, *g.outputs))
    if memory["arena_bytes"] + io * (samples + 1) > max_bytes:
        camp.too_large += 1
        return
    seen.add(sig)
    camp.compiled += 1
    exe, err = build.build(out_dir)
    if exe is None:
        camp.bugs.append(Finding(name, k, "compile", err, data))
        return
    problem = build.run(exe, sample_inputs(facts, rng, samples))
    camp.runs += samples
    if problem:
        camp.bugs.append(Finding(name, k, "run", problem, data))


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
