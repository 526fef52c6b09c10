"""What `project` ingests with, and how: the legacy stores through their change streams where
`recompute cdc setup` made one (the tables a stream does not carry now, and every store without one,
by snapshot), Stripe's Events API every --stripe-interval s when STRIPE_API_KEY is set.

    Sources.open(app)      the streams (ingestion/legacy/cdc/keeper.py) and the snapshot jobs,
                              held until close()
    sources.once()            one pass: each open stream up to the server's flush LSN, the snapshots, Stripe
    sources.run(stop, ...)    on until `stop`: the streams read continuously (a broken one retried on its
                              own backoff), which tables they carry checked every SNAPSHOT_BESIDE_STREAMS_S,
                              snapshots every --legacy-interval s (beside streams, every
                              SNAPSHOT_BESIDE_STREAMS_S), Stripe every --stripe-interval s; a failure of
                              a snapshot or Stripe pass is logged when it starts and when it ends
                              (recompute.ingest), a stream's by the keeper (recompute.cdc)
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import stripe

from domain.legacy_tables import STORES
from eventlog.own_tables import ensure_own_schema
from eventlog.stores import Error, Stores
from ingestion.jobs import IngestJob
from ingestion.legacy.cdc.keeper import StreamKeeper
from ingestion.legacy.cdc.names import lock_name
from ingestion.legacy.cdc.replication import ReplicationError
from ingestion.legacy.cdc.stream import NotSetUp, read_position
from ingestion.report import IngestReport
from ingestion.streamed_jobs import snapshot_jobs, snapshots_while_streaming
from projections.follow.health import Health
from recompute.bootstrap import App

log = logging.getLogger("recompute.ingest")

FAILURES = (Error, stripe.StripeError, OSError, ReplicationError, NotSetUp)
SNAPSHOT_BESIDE_STREAMS_S = 5.0  # the tables no stream carries, when the store has a stream
POLL_S = 0.05  # the streams' wait when none has anything


@dataclass
class Sources:
    app: App
    legacy: list[IngestJob]
    stripe: list[IngestJob]
    keeper: StreamKeeper
    once_more: list[IngestJob] = field(default_factory=list)  # tables back in their stream: one last snapshot
    passes: Health = field(default_factory=lambda: Health(log, "ingest", source="snapshots"))  # snapshots, Stripe

    @classmethod
    def open(cls, app: App, *, sender_timeout_s: float | None = None) -> Sources:
        """`sender_timeout_s`: the streams' wal_sender_timeout (project --follow: its lease), so a
        frozen reader's slot is released for another follower's ingest."""
        jobs = app.ingest_jobs("all")
        legacy = [job for job in jobs if job.source in STORES]
        ensure_own_schema(app.stores.eventstore)
        with app.stores.connect(purpose="ingest") as log:
            streamed = [job.source for job in legacy if read_position(log, job.source) is not None]
        keeper = StreamKeeper(streamed, app.stores, sender_timeout_s=sender_timeout_s)
        sources = cls(app, legacy, [job for job in jobs if job.source == "stripe"], keeper)
        try:
            keeper.open()
            keeper.refresh()
        except BaseException:
            sources.close()
            raise
        return sources

    @property
    def snapshots(self) -> list[IngestJob]:
        return snapshot_jobs(self.legacy, self.keeper.snapshot_tables)

    def describe(self) -> str:
        streamed = ", ".join(self.keeper.streamed) or "none"
        broken = "".join(f"; {store} stream broken: {state.why.text}" for store, state in self.keeper.broken.items())
        return f"legacy stores through change streams: {streamed}{broken}; by snapshot: " + (
            ", ".join(f"{j.source}" + (f" ({', '.join(j.tables)})" if j.tables else "") for j in self.snapshots)
            or "nothing")

    def once(self) -> tuple[list[IngestReport], dict[str, int]]:
        """The snapshots and Stripe (the streams read meanwhile), then each stream up to the server's
        flush LSN: the reports, and what each stream appended."""
        streams = self.keeper.open_streams
        before = {stream.store: stream.appended for stream in streams}
        reports = snapshots_while_streaming([*self.snapshots, *self.stripe], self._reader(), workers=3)
        for stream in streams:
            stream.catch_up()
        return reports, {stream.store: stream.appended - before[stream.store] for stream in streams}

    def _reader(self) -> Callable[[], object] | None:
        return (lambda: self.keeper.read(0.1)) if self.keeper.streamed else None

    def run(self, stop: Any, legacy_interval: float, stripe_interval: float) -> None:
        snapshot_every = max(legacy_interval, SNAPSHOT_BESIDE_STREAMS_S) if self.keeper.streamed else legacy_interval
        next_snapshot = next_stripe = 0.0
        next_check = time.monotonic() + SNAPSHOT_BESIDE_STREAMS_S
        while not stop.is_set():
            if self.keeper.streamed:
                self.keeper.read(POLL_S)
            now = time.monotonic()
            if self.keeper.streamed and now >= next_check:
                for store, tables in self.keeper.refresh().items():
                    self.once_more += [dataclasses.replace(job, tables=tables) for job in self.legacy if job.source == store]
                next_check = now + SNAPSHOT_BESIDE_STREAMS_S
            due: list[IngestJob] = []
            if self.once_more:
                due, self.once_more = self.once_more, []
            snapshots = self.snapshots
            if snapshots and now >= next_snapshot:
                due += snapshots
                next_snapshot = now + snapshot_every
            if self.stripe and now >= next_stripe:
                due += self.stripe
                next_stripe = now + stripe_interval
            if due:
                try:
                    with stores_held(self.app.stores, due, self.keeper.streamed) as runnable:
                        snapshots_while_streaming(runnable, self._reader(), workers=1)
                    self.passes.up()
                except FAILURES as error:
                    self.passes.down(error, gone="failed")
            if not self.keeper.streamed:
                stop.wait(legacy_interval if snapshots else 1.0)

    def close(self) -> None:
        self.keeper.close()


@contextmanager
def stores_held(stores: Stores, jobs: list[IngestJob], streamed: list[str]) -> Iterator[list[IngestJob]]:
    """The jobs whose store this process may read by snapshot now: a streamed store's only while it
    holds the store's lock (names.lock_name, the stream's and `ingest --resync`'s), so another
    follower's ingest, or a `cdc setup` handoff, never snapshots the same tables at the same time
    (two snapshots comparing with the same digests would both append a row's new version). A store
    whose lock another holds is left to the next round."""
    kept = [job for job in jobs if job.source not in streamed]
    if len(kept) == len(jobs):
        yield kept
        return
    with stores.connect(purpose="ingest", autocommit=True) as conn:
        taken = {store for store in {job.source for job in jobs if job.source in streamed}
                 if conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (lock_name(store),)).fetchone()[0]}
        yield kept + [job for job in jobs if job.source in taken]
