"""Up-to-date checks for ``deploy``: reuse a stage's outputs when its inputs are unchanged.

A stamp (``OUT/.tinydeploy-stamps.json``) records, per stage, a fingerprint of its inputs
(file SHA-256s plus the options that change the result, and the tinydeploy version), the
SHA-256 of each output file and the stage's result dict. A stage is reused only when the
fingerprint matches and every output file still has its recorded hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

from ._version import __version__
from .output import write_atomic

STAMP_NAME = ".tinydeploy-stamps.json"


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes; ``""`` if it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return ""
    return h.hexdigest()


def fingerprint(files: list[str | Path], **options: Any) -> str:
    """One hash of the input files' contents, the options and the tinydeploy version.

    Args:
        files: input files (missing files hash as empty).
        **options: JSON-able options that change the stage's result.

    Returns:
        A hex SHA-256.
    """
    doc = {"version": __version__, "options": options,
           "files": [file_sha256(f) for f in files]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _load(out: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        doc = json.loads((out / STAMP_NAME).read_text())
        if isinstance(doc, dict):
            return doc
    return {}


def reusable(out: Path, stage: str, fp: str) -> dict[str, Any] | None:
    """The recorded result of ``stage`` if its fingerprint is ``fp`` and its outputs are
    intact; else ``None``."""
    entry = _load(out).get(stage)
    if not isinstance(entry, dict) or entry.get("fingerprint") != fp:
        return None
    for path, sha in entry.get("outputs", {}).items():
        if file_sha256(out / path) != sha:
            return None
    result = entry.get("result")
    return result if isinstance(result, dict) else None


def record(out: Path, stage: str, fp: str, outputs: list[Path], result: dict[str, Any]) -> None:
    """Record that ``stage`` with fingerprint ``fp`` produced ``outputs`` and ``result``.

    Args:
        out: the deploy folder (paths are stored relative to it).
        stage: stage name (``train``, ``quantize``).
        fp: the inputs' :func:`fingerprint`.
        outputs: output files to verify on reuse.
        result: the stage result (JSON-able).
    """
    doc = _load(out)
    doc[stage] = {"fingerprint": fp, "result": result,
                  "outputs": {str(Path(p).resolve().relative_to(out.resolve())): file_sha256(p)
                              for p in outputs}}
    write_atomic(out / STAMP_NAME, json.dumps(doc, indent=2, default=str) + "\n")
