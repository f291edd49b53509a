"""One logger for stages and progress (rich on a terminal, plain text otherwise)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TypeVar

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


def setup(verbose: bool = False) -> None:
    """Attach one handler to the tinydeploy logger (idempotent)."""
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not log.handlers:
        handler: logging.Handler
        if console.is_terminal:
            handler = RichHandler(console=console, show_time=False, show_path=False,
                                  markup=False)
            handler.setFormatter(logging.Formatter("%(message)s"))
        else:  # logs, CI, pipes: one unwrapped line per record
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(levelname)-7s %(message)s"))
        log.addHandler(handler)
        log.propagate = False


def stage(name: str, detail: str = "") -> None:
    """Announce a pipeline stage."""
    log.info("[%s] %s", name, detail)


def progress(items: Iterable[T], total: int | None, description: str) -> Iterator[T]:
    """Iterate with a progress bar on a terminal; silently otherwise."""
    if not console.is_terminal:
        yield from items
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)
