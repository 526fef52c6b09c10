"""The executor on Dask (projections/executor.py's seam): a `distributed.LocalCluster` of `workers`
single-threaded processes, or the workers of the scheduler at RECOMPUTE_DASK_SCHEDULER.

A local cluster is started on the first `map` (0.45 s, and 1.1-1.5 s more for `plan`: its workers
import the engine), a scheduler connected to at once; closed with the command. A worker that
dies mid-task (kill -9, OOM) costs its task a rerun on another worker: every piece of work we give
it is idempotent (a partition commits its states and its row in one transaction). A worker's local
processes die with us (distributed's parent-alive pipe), so a killed `recompute` leaves none
committing behind a rerun. Dask's own logging is kept to errors: a lost worker is not news to the
operator, its rerun is the design.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from typing import Any, TypeVar

from recompute.settings import SettingsError

T = TypeVar("T")
R = TypeVar("R")
_QUIET = ("distributed", "distributed.nanny", "distributed.scheduler", "distributed.worker",
          "distributed.core", "distributed.client", "distributed.comm", "distributed.deploy",
          "distributed.shuffle", "tornado", "asyncio")


class DaskExecutor:
    def __init__(self, *, workers: int, scheduler: str | None = None) -> None:
        self.workers = workers
        self.scheduler = scheduler
        self._client: Any = None
        self._stack = ExitStack()

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        client = self.connect()
        futures = client.map(fn, list(items), pure=False)
        try:
            for future in futures:
                yield future.result()
        finally:
            client.cancel(futures)

    def close(self) -> None:
        self._stack.close()
        self._client = None

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ready(self) -> None:
        """What `running` does first: a scheduler is connected to now (one unreachable is a
        SettingsError before anything is written); a local cluster starts on the first `map`, so a
        command that finds nothing worth its workers (plan on an unchanged log) starts none."""
        if self.scheduler:
            self.connect()

    def connect(self) -> Any:
        if self._client is not None:
            return self._client
        quiet_dask()
        import dask
        from distributed import Client, LocalCluster

        dask.config.set({"distributed.scheduler.allowed-failures": 10})  # a lost worker's task: run it again
        if self.scheduler:
            try:
                self._client = self._stack.enter_context(Client(self.scheduler, timeout=5))
            except (OSError, TimeoutError, ValueError) as error:
                raise SettingsError("RECOMPUTE_DASK_SCHEDULER",
                                    f"cannot reach a Dask scheduler at {self.scheduler!r}: "
                                    f"{' '.join(str(error).split()) or type(error).__name__}") from None
            return self._client
        cluster = self._stack.enter_context(LocalCluster(
            n_workers=self.workers, threads_per_worker=1, processes=True, dashboard_address=None,
            silence_logs=logging.CRITICAL, memory_limit=0))
        self._client = self._stack.enter_context(Client(cluster))
        return self._client


def quiet_dask() -> None:
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", message="Port .* is already in use", module="distributed")
