"""Output written all-or-nothing: a staged folder moved into place, files renamed into place.

Every stage that writes user-visible output goes through here, so a failed run leaves no
half-written result. Policy for an existing output folder: entries the stage generates
replace same-named entries; everything else in the folder is kept.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

from .errors import TinyDeployError

_FIX = "choose a writable --out folder"


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
def staged_output(out: str | Path) -> Iterator[Path]:
    """Yield a temporary folder on the same filesystem as ``out`` (inside it when it exists,
    so a mount point works; else beside it); when the block succeeds, move its entries into
    ``out`` (replacing same-named entries, keeping the others). On error the temporary folder
    and any parent folder created for it are removed."""
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
        if not out.exists():
            os.replace(tmp, out)
            return
        for entry in sorted(tmp.iterdir()):
            _replace(entry, out / entry.name)
        tmp.rmdir()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
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
        bad = Path(exc.filename) if exc.filename else targets[0]
        raise TinyDeployError("io_error", path=bad,
                              problem=f"cannot write ({exc.strerror or exc})", fix=_FIX) from exc
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


def prune_owned(out: str | Path, produced: set[str], owned: set[str]) -> list[Path]:
    """Make a re-run own its output folder: remove the entries of ``out`` an earlier run
    of the same stage wrote (recorded in ``OWNED_MANIFEST``, plus the names in ``owned``)
    that this run did not produce; then record ``produced``. Other entries are kept.

    Args:
        out: the output folder (after the staged move).
        produced: top-level names this run wrote.
        owned: top-level names the stage may write in any mode (e.g. ``platformio.ini``).

    Returns:
        The removed paths.
    """
    import json

    out = Path(out)
    manifest = out / OWNED_MANIFEST
    before: set[str] = set(owned)
    with contextlib.suppress(OSError, ValueError, TypeError):
        before |= {str(n) for n in json.loads(manifest.read_text()).get("entries", [])}
    removed = []
    for name in sorted(before - produced - {OWNED_MANIFEST}):
        path = out / name
        if Path(name).name != name or not (path.exists() or path.is_symlink()):
            continue  # never outside ``out``
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(path)
    write_atomic(manifest, json.dumps({"entries": sorted(produced)}, indent=2) + "\n")
    return removed
