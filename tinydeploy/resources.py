"""Where the non-Python parts live: ``templates/``, ``firmware/`` and ``examples/``.

In a source checkout (or editable install) they sit beside the package; in a wheel they
are packaged under ``tinydeploy/_res/``.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    for candidate in (_HERE / "_res" / name, _HERE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"tinydeploy resource folder '{name}' is missing from the install")


def templates_dir() -> Path:
    return resource_dir("templates")


def firmware_dir() -> Path:
    return resource_dir("firmware")


def examples_dir() -> Path:
    return resource_dir("examples")
