"""Compiled objects of tinydeploy's own C library sources (kernels, protocol, board support),
cached by what the compiler sees, so each is compiled once per content and flags.

``compile_objects(cc, sources, flags, run)`` returns one object per source, from the cache
``<cache>/obj/`` (``<cache>``: the parent of ``$TINYDEPLOY_TFLM_CACHE``, default
``~/.cache/tinydeploy``, as for the arena cache) or compiled now, the missing ones in
parallel. The key is the SHA-256 of the compiler (path, size, date, ``--version``), the
flags without include paths and defines, and the preprocessed source (``-E -P``: every
header and ``-D`` applied), so a change to a source, a header it includes, a define it
uses, a flag or the compiler compiles anew. The compiler's messages are kept beside the
object and returned on a hit as a fresh compile would print them. Objects are written
under a temporary name and renamed (parallel test workers and interrupted builds leave no
half object); the least recently used are removed past ``MAX_OBJECTS``. Only sources
named like a file of ``firmware/`` are cached (``is_library_source``): a model's own
``td_model.c`` is compiled every time.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import hashlib
import os
import secrets
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from .resources import firmware_dir

Runner = Callable[[list[str], str], "subprocess.CompletedProcess[str]"]
KEY_VERSION = "1"  # bump when the key or the object layout changes
MAX_OBJECTS = 2000
PREPROCESS_TIMEOUT = 120.0


def cache_dir() -> Path:
    """``<cache>/obj`` (beside the TFLM library cache; ``$TINYDEPLOY_TFLM_CACHE`` moves both)."""
    from .device.tflm_build import cache_root

    return cache_root().parent / "obj"


@functools.cache
def _fallback_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="tinydeploy-obj-"))


def _usable_dir() -> Path:
    """``cache_dir()``, or a temporary folder for this process when it cannot be written
    (a read-only home must not break a build)."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK | os.X_OK):
            return folder
    except OSError:
        pass
    return _fallback_dir()


@functools.cache
def _library_names() -> frozenset[str]:
    fw = firmware_dir()
    return frozenset(p.name for p in [*fw.glob("*.c"), *fw.glob("*/*.c")])


def is_library_source(src: Path) -> bool:
    """A copy of (or the) ``firmware/`` C source of that name: compiled through the cache."""
    return Path(src).name in _library_names()


@functools.cache
def _compiler_id(cc: str) -> str:
    path = os.path.realpath(cc)
    st = os.stat(path)
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
        version = out.stdout.splitlines()[0] if out.stdout else ""
    except (OSError, subprocess.SubprocessError):
        version = ""
    return f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{version}"


def _folder_state(folders: Sequence[str]) -> str:
    """Digest of (name, size, mtime) of every file directly in ``folders``."""
    h = hashlib.sha256()
    for folder in folders:
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            for e in sorted(entries, key=lambda e: e.name):
                if e.is_file():
                    st = e.stat()
                    h.update(f"{folder}/{e.name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()


_KEYS: dict[tuple[str, ...], str] = {}  # this process's keys of unchanged sources (_key)


def _key(cc: str, src: Path, flags: Sequence[str]) -> str | None:
    """The object's key, or None when the source does not preprocess on its own (then it is
    compiled uncached and the compiler reports the problem). A source compiled again from
    the same place, with its folder and the include folders unchanged (the headers it can
    include), reuses the key this process computed (no preprocessing)."""
    memo: tuple[str, ...] | None = None
    if not any(f in ("-I", "-include", "-iquote", "-isystem", "-imacros") for f in flags):
        dirs = [str(src.parent), *(f[2:] for f in flags if f.startswith("-I"))]
        memo = (cc, *flags, str(src), _folder_state(dirs))
        if memo in _KEYS:
            return _KEYS[memo]
    key = _preprocessed_key(cc, src, flags)
    if memo is not None and key is not None:
        if len(_KEYS) > 10_000:
            _KEYS.clear()
        _KEYS[memo] = key
    return key


def _preprocessed_key(cc: str, src: Path, flags: Sequence[str]) -> str | None:
    try:
        pre = subprocess.run([cc, *flags, "-E", "-P", str(src)], capture_output=True,
                             timeout=PREPROCESS_TIMEOUT)
    except (OSError, subprocess.SubprocessError):
        return None
    if pre.returncode != 0:
        return None
    h = hashlib.sha256(f"tinydeploy-obj {KEY_VERSION}\0{_compiler_id(cc)}\0".encode())
    # include paths and defines act through the preprocessed text alone
    h.update("\0".join(f for f in flags if not f.startswith(("-I", "-D", "-U"))).encode())
    h.update(b"\0")
    h.update(pre.stdout)
    return h.hexdigest()[:32]


def _compile_one(cc: str, src: Path, flags: Sequence[str], run: Runner, what: str,
                 folder: Path) -> tuple[Path, str, bool]:
    """(object, compiler messages, newly written to the cache) for one source."""
    key = _key(cc, src, flags)
    if key is None:  # not cacheable: compile beside the cache under a one-off name
        obj = folder / f"nokey-{secrets.token_hex(8)}.o"
        proc = run([cc, *flags, "-c", str(src), "-o", str(obj)], what)
        return obj, proc.stderr, True  # counted for the pruning
    obj, msgs = folder / f"{key}.o", folder / f"{key}.txt"
    if obj.is_file() and msgs.is_file():
        with contextlib.suppress(OSError):
            os.utime(obj)
            return obj, msgs.read_text(), False
    tmp = folder / f".{key}.{secrets.token_hex(4)}.tmp"
    try:
        proc = run([cc, *flags, "-c", str(src), "-o", str(tmp)], what)
        tmp_msgs = tmp.with_suffix(".txt")
        tmp_msgs.write_text(proc.stderr)
        os.replace(tmp_msgs, msgs)
        os.replace(tmp, obj)  # last: an object without its messages is never used
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return obj, proc.stderr, True


def _prune(folder: Path) -> None:
    """Remove the least recently used objects beyond ``MAX_OBJECTS`` (down to 80 %)."""
    with contextlib.suppress(OSError):
        objs = list(folder.glob("*.o"))
        if len(objs) <= MAX_OBJECTS:
            return
        by_age = sorted(objs, key=lambda p: p.stat().st_mtime if p.exists() else 0.0)
        for obj in by_age[:len(objs) - MAX_OBJECTS * 4 // 5]:
            for path in (obj, obj.with_suffix(".txt")):
                with contextlib.suppress(OSError):
                    path.unlink()


def compile_objects(cc: str, sources: Sequence[Path], flags: Sequence[str], run: Runner,
                    what: Callable[[Path], str]) -> tuple[list[Path], str]:
    """Objects of ``sources`` (in order) compiled with ``cc flags -c``, from the cache or
    compiled now in parallel (``os.cpu_count()`` at a time), and the compiler messages of
    all of them. ``run(cmd, what(src))`` runs one compile and raises the caller's error
    when it fails; the first failure is raised after the running compiles end."""
    if not sources:
        return [], ""
    folder = _usable_dir()
    workers = min(len(sources), os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_compile_one, cc, Path(s), flags, run, what(Path(s)), folder)
                   for s in sources]
        results = [f.result() for f in futures]
    if any(new for _, _, new in results):
        _prune(folder)
    return [obj for obj, _, _ in results], "".join(msg for _, msg, _ in results)
