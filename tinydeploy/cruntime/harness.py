"""Build generated C models with the host compiler and run many inputs through them.

The harness program reads raw int8 samples from stdin (TD_MODEL_INPUT_SIZE bytes each)
and writes TD_MODEL_OUTPUT_SIZE bytes per sample to stdout: one process per batch.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from ..errors import TinyDeployError
from ..install_hints import C_COMPILER
from ..objcache import compile_objects, is_library_source

HARNESS_C = r"""/* tinydeploy test harness: raw int8 samples on stdin -> raw outputs on stdout. */
#include <stdio.h>
#include "td_model.h"

/* any argument: td_reset() before every sample (stateful models, as TFLM's Reset()) */
int main(int argc, char **argv) {
  static int64_t in_store[(TD_MODEL_INPUT_SIZE + 7) / 8];
  static int64_t out_store[(TD_MODEL_OUTPUT_SIZE + 7) / 8];
  int8_t *in = (int8_t *)in_store, *out = (int8_t *)out_store;
  (void)argv;
  while (fread(in, 1, TD_MODEL_INPUT_SIZE, stdin) == TD_MODEL_INPUT_SIZE) {
    if (argc > 1) td_reset();
    if (td_invoke(in, out) != 0) return 2;
    if (fwrite(out, 1, TD_MODEL_OUTPUT_SIZE, stdout) != TD_MODEL_OUTPUT_SIZE) return 3;
  }
  return 0;
}
"""

STRICT_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")


def compiler() -> str:
    for cc in ("gcc", "cc", "clang"):
        path = shutil.which(cc)
        if path:
            return path
    raise TinyDeployError("tool_missing", tool="a C compiler (gcc)",
                          fix=C_COMPILER)


def compile_c(sources: list[Path], output: Path, include: list[Path],
              flags: tuple[str, ...] = STRICT_FLAGS, opt: str = "-O1",
              timeout: float = 300.0) -> Path:
    """Compile and link ``sources`` into ``output`` (with ``-c`` in ``flags``: compile one
    source to an object). tinydeploy's own library sources (``firmware/``) come from the
    object cache (:mod:`tinydeploy.objcache`), the rest (the model) is compiled now."""
    cc = compiler()

    def run(cmd: list[str], what: str = "C compile") -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise TinyDeployError("build_failed", what=what, rc=proc.returncode,
                                  tail=" | ".join(tail), fix="report this model to tinydeploy")
        return proc

    cflags = [*flags, opt, *(f"-I{p}" for p in include)]
    library = [s for s in sources if is_library_source(s)] if "-c" not in flags else []
    objects, _ = compile_objects(cc, library, cflags, run, lambda _src: "C compile")
    cached = dict(zip(library, objects, strict=True))
    run([cc, *cflags, *(str(cached.get(s, s)) for s in sources), "-o", str(output)])
    return output


def build_harness(model_dir: Path, opt: str = "-O1") -> Path:
    """Compile the generated model in ``model_dir`` with a stdin/stdout harness."""
    model_dir = Path(model_dir)
    main = model_dir / "td_harness_main.c"
    main.write_text(HARNESS_C)
    from .codegen import MODEL_SOURCES

    sources = [main, *(model_dir / f for f in MODEL_SOURCES)]
    return compile_c(sources, model_dir / "td_harness", [model_dir], opt=opt)


def run_harness(binary: Path, inputs: np.ndarray, out_shape: tuple[int, ...],
                out_dtype: str = "int8") -> np.ndarray:
    """Run all samples (batch axis first) through the harness (int8 or float32 tensors)."""
    x = np.ascontiguousarray(inputs)
    if x.dtype != np.float32:
        x = x.astype(np.int8)
    proc = subprocess.run([str(binary)], input=x.tobytes(), capture_output=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"harness exited with {proc.returncode}: {proc.stderr[-300:]!r}")
    return np.frombuffer(proc.stdout, dtype=out_dtype).reshape((len(x), *out_shape))


def run_harness_bytes(binary: Path, samples: list[list[np.ndarray]],
                      outputs: list[tuple[tuple[int, ...], str]],
                      reset: bool = False) -> list[list[np.ndarray]]:
    """Run samples of several tensors each (any dtypes: their raw bytes are concatenated in
    model input order) and split every output back into its tensors (shape, dtype).
    ``reset``: td_reset() before each sample (else a stateful model runs them as one
    sequence)."""
    blob = b"".join(b"".join(np.ascontiguousarray(t).tobytes() for t in s) for s in samples)
    cmd = [str(binary), "--reset"] if reset else [str(binary)]
    proc = subprocess.run(cmd, input=blob, capture_output=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"harness exited with {proc.returncode}: {proc.stderr[-300:]!r}")
    sizes = [int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize
             for shape, dt in outputs]
    step = sum(sizes)
    if len(proc.stdout) != step * len(samples):
        raise RuntimeError(f"harness wrote {len(proc.stdout)} bytes, expected "
                           f"{step * len(samples)}")
    result = []
    for k in range(len(samples)):
        off, row = k * step, []
        for (shape, dt), n in zip(outputs, sizes, strict=True):
            row.append(np.frombuffer(proc.stdout[off:off + n], dtype=dt).reshape(shape))
            off += n
        result.append(row)
    return result
