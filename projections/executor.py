"""The executor seam: where a job's independent pieces of work run (the partitions of `backfill`,
the account ranges of `plan` and `apply`).

    results = executor.map(fn, items)     # one result per item, in ITEM order; fn and items picklable

`InlineExecutor` runs them here, one after the other (unit tests, `plan --account`, one worker).
The real one, on Dask (a `LocalCluster` of worker processes, or a scheduler's workers), is built
once in `recompute/bootstrap.py` and passed in by keyword. A piece of work must be idempotent: a
lost worker's piece simply runs again elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        """fn(item) for each item, yielded in the items' order as they are done."""
        ...


class InlineExecutor:
    """Runs each piece in this process, in order: the fake beside the Dask adapter."""

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        for item in items:
            yield fn(item)
