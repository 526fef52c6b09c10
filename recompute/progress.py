"""A progress bar on stderr, only when stderr is a terminal (a pipe, a log file or a test sees
nothing): `with progress("backfill", unit="partitions") as step: step(done, total)`."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Step = Callable[[int, int], None]  # (done, total)


@contextmanager
def progress(what: str, *, unit: str) -> Iterator[Step]:
    if not sys.stderr.isatty():
        yield lambda done, total: None
        return
    from rich.console import Console  # here: ~20 ms of every command's start, for a terminal only
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn(f"{what}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                   TimeElapsedColumn(), console=Console(stderr=True), transient=True)
    with bar:
        task = bar.add_task(what, total=None)

        def step(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
        yield step
