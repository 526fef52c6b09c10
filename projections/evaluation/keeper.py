"""Kept facts written beside the evaluation: one batch at a time on a thread of its own.

    with Keeper(source) as keeper:     # source: a KeptStreams (projections/evaluation/sources.py)
        keeper.keep(batch)             # returns once the batch before is written; this one is written meanwhile

The engine (engine.py) folds the next accounts while the server writes a batch (an upsert of
~1,000 accounts' facts and decisions, ~0.07 s of a first plan's 1,000 accounts, most of it the
server's). At most one batch is in flight, so memory holds two batches at most; an error of a
write is raised by the next `keep` or at the end, never lost. What is kept never changes what an
evaluation yields, only what a later one may stand on.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from projections.evaluation.kept_facts import Keep


class Keeps(Protocol):
    def keep(self, rows: Sequence[Keep]) -> None: ...


class Keeper:
    def __init__(self, source: Keeps) -> None:
        self._source = source
        self._thread: ThreadPoolExecutor | None = None
        self._writing: Future[None] | None = None

    def keep(self, rows: Sequence[Keep]) -> None:
        """Waits for the batch before, then writes `rows` on the keeper's thread."""
        self.wait()
        if rows:
            if self._thread is None:
                self._thread = ThreadPoolExecutor(1, thread_name_prefix="keep facts")
            self._writing = self._thread.submit(self._source.keep, list(rows))

    def wait(self) -> None:
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def __enter__(self) -> Keeper:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.wait()
        finally:
            if self._thread is not None:
                self._thread.shutdown()
