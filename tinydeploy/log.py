"""One logger for stages and progress (rich on a terminal, plain text otherwise).

Used from Python without any logging configuration, tinydeploy still reports its stages
and progress on stderr at INFO: a fallback handler prints ``tinydeploy`` records while
the root logger has no handler. Once the application configures logging (e.g.
``logging.basicConfig``), the records go to its handlers instead and the fallback stays
silent. Silence tinydeploy with ``logging.getLogger("tinydeploy").setLevel(logging.WARNING)``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

log = logging.getLogger("tinydeploy")
console = Console(stderr=True)
T = TypeVar("T")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler on whatever ``sys.stderr`` is when a record is written (not the one
    of its creation: a test's captured stream, a redirected stderr)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _handler() -> logging.Handler:
    handler: logging.Handler
    if console.is_terminal:
        handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:  # logs, CI, pipes: one unwrapped line per record
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)-7s %(message)s"))
    return handler


class FallbackHandler(logging.Handler):
    """Prints records on stderr only while the root logger has no handler (the
    application did not configure logging); otherwise propagation delivers them."""

    def __init__(self) -> None:
        super().__init__()
        self._inner: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers:
            return
        if self._inner is None:
            self._inner = _handler()
        self._inner.handle(record)


def _install_fallback() -> None:
    if not log.handlers:
        log.addHandler(FallbackHandler())
        if log.level == logging.NOTSET:
            log.setLevel(logging.INFO)


_install_fallback()


def setup(verbose: bool = False, quiet: bool = False) -> None:
    """Attach the CLI's handler to the tinydeploy logger (idempotent) and set the level.

    Args:
        verbose: DEBUG level (``-v``).
        quiet: WARNING level (``-q``); ``verbose`` wins if both are given.
    """
    log.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    for h in [h for h in log.handlers if isinstance(h, FallbackHandler)]:
        log.removeHandler(h)
    if not log.handlers:
        log.addHandler(_handler())
        log.propagate = False


def stage(name: str, detail: str = "") -> None:
    """Announce a pipeline stage."""
    log.info("[%s] %s", name, detail)


def progress(items: Iterable[T], total: int | None, description: str) -> Iterator[T]:
    """Iterate with a progress bar on a terminal; otherwise log ``description: k/total``
    at INFO every 10 % (for runs of at least 20 items).

    Args:
        items: what to iterate over.
        total: number of items (None: unknown, no percentage lines).
        description: label of the bar / log lines.

    Yields:
        The items.
    """
    if not console.is_terminal or not log.isEnabledFor(logging.INFO):
        step = max(1, (total or 0) // 10) if total and total >= 20 else 0
        for k, item in enumerate(items, 1):
            yield item
            if step and (k % step == 0 or k == total):
                log.info("%s: %d/%d", description, k, total)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)
