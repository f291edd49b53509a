"""Values as an engineer reads them: numbers grouped without exponent noise, fractions as
percentages, yes/no, "-" for nothing, JSON keys as labels. Used by the page and the
headline (and so by the CLI summary): one spelling everywhere."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def number(value: float | int, digits: int = 6) -> str:
    """A number without exponent noise: integers grouped (``1 410 080``), floats with
    ``digits`` significant digits."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()
                                  and abs(value) < 1e15):
        return f"{int(value):,}".replace(",", "\u202f")
    if abs(value) >= 1e5:
        return f"{value:,.1f}".replace(",", "\u202f")
    return f"{value:.{digits}g}"


def pct(value: float | None, digits: int = 2) -> str:
    """A fraction as a percentage (``0.9388`` -> ``93.88 %``)."""
    return "n/a" if value is None else f"{100.0 * float(value):.{digits}f} %"


def fmt(value: Any, unit: str = "") -> str:
    """Any JSON value as text: bool -> yes/no, None -> "-", lists and dicts spelled out."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return number(value) + (f" {unit}" if unit else "")
    if isinstance(value, Mapping):
        return "; ".join(f"{label(k)}: {fmt(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(fmt(v) for v in value) or "-"
    return str(value)


def label(key: Any) -> str:
    """A JSON key as a row label: ``sizes_bytes.int8`` -> ``sizes bytes: int8``."""
    text = str(key).replace("_", " ")
    return ": ".join(p.strip() for p in text.split(".")) if "." in text else text
