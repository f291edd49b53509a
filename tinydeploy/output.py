"""Output written all-or-nothing: a staged folder moved into place, files renamed into place.

Every stage that writes user-visible output goes through here, so a failed run leaves no
half-written result. Policy for an existing output folder: entries the stage generates
replace same-named entries; everything else in the folder is kept. With ``owned=True``
(``generate``) the stage owns single files, recorded with their hashes in
``OWNED_MANIFEST``: a re-run never overwrites or deletes a file it did not write, keeps a
generated file the user edited (writing the new one beside it as ``NAME.new``) and removes
only its own stale files.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

from .errors import TinyDeployError

_FIX = "choose a writable --out folder"
# what a write can meet on the user's disk, spelled for them (the rest stays a bug's traceback)
WRITE_ERRORS = {
    errno.EROFS: ("the filesystem is read-only", _FIX),
    errno.EACCES: ("permission denied", _FIX),
    errno.EPERM: ("operation not permitted", _FIX),
    errno.ENOSPC: ("no space left on the device", "free some space or choose an --out on "
                                                  "another filesystem"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or choose an --out on another "
                                          "filesystem"),
    errno.EFBIG: ("file too large for the filesystem", "choose an --out on another "
                                                       "filesystem"),
}


def io_error(exc: OSError, path: str | Path) -> TinyDeployError:
    """The one-line ``io_error`` for a failed write (``exc.filename`` or ``path``): a
    read-only filesystem, no permission, a full disk..."""
    problem, fix = WRITE_ERRORS.get(exc.errno or 0, (exc.strerror or str(exc), _FIX))
    where = Path(exc.filename) if exc.filename else Path(path)
    return TinyDeployError("io_error", path=where, problem=f"cannot write ({problem})",
                           fix=f"{fix}; nothing was written")


@contextlib.contextmanager
def write_errors(path: str | Path) -> Iterator[None]:
    """Turn a write error of the block (``WRITE_ERRORS``) into one ``io_error``."""
    try:
        yield
    except OSError as exc:
        if exc.errno in WRITE_ERRORS:
            raise io_error(exc, path) from exc
        raise


def check_output_dir(out: str | Path) -> Path:
    """Fail early (``output_exists``) if ``out`` or its nearest existing parent is not a folder."""
    out = Path(out)
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                raise TinyDeployError("output_exists", path=p)
            break
    return out


def _missing_parents(folder: Path) -> list[Path]:
    """The folders ``mkdir(parents=True)`` would create for ``folder``, outermost first."""
    return [p for p in reversed([folder, *folder.parents]) if not p.exists()]


def _remove_empty(folders: list[Path]) -> None:
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _temp_name(target: Path) -> Path:
    return target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"


def _replace(src: Path, dest: Path) -> None:
    """Move ``src`` onto ``dest``, removing whatever ``dest`` was (file, link or folder)."""
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)
    elif dest.exists() or dest.is_symlink():
        dest.unlink()
    os.replace(src, dest)


@contextlib.contextmanager
def staged_output(out: str | Path, *, owned: bool = False,
                  once: Collection[str] = ()) -> Iterator[Path]:
    """Yield a temporary folder on the same filesystem as ``out`` (inside it when it exists,
    so a mount point works; else beside it); when the block succeeds, move its entries into
    ``out``. On error the temporary folder and any parent folder created for it are removed.

    Args:
        out: the output folder.
        owned: ``False``: staged top-level entries replace same-named entries wholesale,
            the others are kept. ``True``: the stage owns only the files it wrote, per
            file, recorded with their hashes in ``OWNED_MANIFEST`` (see :func:`_own`).
        once: (with ``owned``) relative paths created when missing and never overwritten
            or removed afterwards (the user's application skeleton).
    """
    out = check_output_dir(out).absolute()
    created = _missing_parents(out.parent)
    tmp = (out / f".tinydeploy-stage.{secrets.token_hex(4)}.tmp" if out.is_dir()
           else _temp_name(out))
    try:
        try:
            tmp.mkdir(parents=True)  # not mkdtemp: the folder may become ``out``, honour umask
        except OSError as exc:
            raise TinyDeployError("io_error", path=out.parent,
                                  problem=f"cannot create a folder ({exc.strerror or exc})",
                                  fix=_FIX) from exc
        yield tmp
        stale = _own(tmp, out, set(once)) if owned else {}
        if not out.exists():
            os.replace(tmp, out)
            return
        if owned:
            _merge_files(tmp, out)
            _remove_stale(out, stale)
            shutil.rmtree(tmp)
            return
        for entry in sorted(tmp.iterdir()):
            _replace(entry, out / entry.name)
        tmp.rmdir()
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRORS:
            raise io_error(exc, out) from exc
        raise


def write_files(files: Mapping[Path, str | bytes]) -> list[Path]:
    """Write every file to a temporary file beside it, then rename them all into place.
    Nothing is replaced unless every file was written; raises ``io_error`` otherwise.
    ``str`` data is written as UTF-8."""
    targets = [Path(t) for t in files]
    for target in targets:
        if target.exists() and not target.is_file():
            raise TinyDeployError("io_error", path=target, problem="exists and is not a file",
                                  fix="remove it or choose another --out")
    created: list[Path] = []
    temps: list[tuple[Path, Path]] = []
    try:
        for target, data in zip(targets, files.values(), strict=True):
            created += _missing_parents(target.parent)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = _temp_name(target)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # honours umask
            temps.append((tmp, target))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        for tmp, target in temps:
            os.replace(tmp, target)
    except OSError as exc:
        raise io_error(exc, targets[0]) from exc
    finally:
        for tmp, _ in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if any(not target.exists() for target in targets):
            _remove_empty(created)
    return targets


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    return write_files({Path(path): data})[0]


OWNED_MANIFEST = ".tinydeploy-owned.json"
NEW_SUFFIX = ".new"  # the fresh version of a generated file the user edited


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _staged_files(tmp: Path) -> list[str]:
    return sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*")
                  if p.is_file() or p.is_symlink())


def _safe(rel: str) -> bool:
    """A manifest entry that names a path inside the output folder."""
    parts = Path(rel).parts
    return bool(parts) and not Path(rel).is_absolute() and ".." not in parts


def read_manifest(out: Path) -> dict[str, str | None]:
    """The files an earlier run wrote into ``out``: relative path -> sha256 of what it
    wrote (``None``: a manifest of the older format, top-level names without hashes)."""
    try:
        data = json.loads((out / OWNED_MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    if isinstance(data.get("files"), dict):
        return {str(k): str(v) for k, v in data["files"].items() if _safe(str(k))}
    found: dict[str, str | None] = {}
    for name in data.get("entries", []):  # older format: whole top-level entries
        top = out / str(name)
        if not _safe(str(name)) or top.is_symlink():
            continue
        files = [p for p in top.rglob("*") if p.is_file()] if top.is_dir() else [top]
        found.update({p.relative_to(out).as_posix(): None for p in files})
    return found


def _own(tmp: Path, out: Path, once: set[str]) -> dict[str, str | None]:
    """Decide, per staged file of ``tmp``, what happens in ``out`` (rewriting ``tmp``):
    written when new, identical or unchanged since the earlier run wrote it; kept when the
    user wrote or edited it, the staged one then renamed to ``NAME.new`` (one log line);
    dropped when it is in ``once`` and exists. Writes the new manifest into ``tmp``.

    Returns:
        The earlier run's files this run no longer owns (path -> hash), for removal.
    """
    from .log import log

    before = read_manifest(out) if out.is_dir() else {}
    now: dict[str, str | None] = {}
    kept: set[str] = set()
    for rel in _staged_files(tmp):
        src, dest = tmp / rel, out / rel
        blocked = next((p for p in dest.parents if out in p.parents
                        and (p.is_file() or p.is_symlink())), None)
        if blocked is not None:  # checked before anything moves: nothing half-written
            raise TinyDeployError("io_error", path=blocked, problem=f"is a file, generate "
                                  f"writes {rel} in a folder of that name",
                                  fix="rename or remove it, or choose another --out")
        if rel in once:
            if dest.exists() or dest.is_symlink():
                src.unlink()
            continue
        digest = _sha256(src)
        if not (dest.exists() or dest.is_symlink()) or (
                dest.is_file() and not dest.is_symlink()
                and (before.get(rel, "") in (None, _sha256(dest)) or _sha256(dest) == digest)):
            now[rel] = digest
            continue
        kept.add(rel)  # the user's file (written or edited by them): never overwritten
        if before.get(rel):
            now[rel] = before[rel]  # still differs next time: kept again
        fresh = rel + NEW_SUFFIX
        if (out / fresh).exists() and before.get(fresh, "") not in (None, _sha256(out / fresh)):
            src.unlink()  # the user's NAME.new too: leave both alone
            log.warning("kept your %s and %s (generate's version not written)",
                        out / rel, out / fresh)
            continue
        src.rename(tmp / fresh)
        now[fresh] = digest
        log.warning("kept your %s (edited or not generate's); the new version is %s",
                    out / rel, out / fresh)
    (tmp / OWNED_MANIFEST).write_text(json.dumps({"version": 2, "files": dict(sorted(
        (k, v) for k, v in now.items() if v is not None))}, indent=2) + "\n")
    return {rel: h for rel, h in before.items() if rel not in now and rel not in kept}


def _merge_files(tmp: Path, out: Path) -> None:
    """Move every staged file into place one by one (folders are merged, not replaced)."""
    for rel in _staged_files(tmp):
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / rel, dest)


def _remove_stale(out: Path, stale: Mapping[str, str | None]) -> list[Path]:
    """Remove the files an earlier run wrote that this one did not, unless the user edited
    them (then one log line), and the folders that leaves empty."""
    from .log import log

    removed = []
    for rel, digest in sorted(stale.items()):
        path = out / rel
        if digest is None or not path.is_file() or path.is_symlink():
            continue  # an older manifest without hashes: cannot tell the user's edits
        if _sha256(path) != digest:
            log.warning("kept your edited %s (no longer generated)", path)
            continue
        path.unlink()
        removed.append(path)
        for folder in path.parents:
            if folder == out or out not in folder.parents:
                break
            try:
                folder.rmdir()
            except OSError:
                break
    return removed
