"""What `project` ingests with, and how: the legacy stores through their change streams where
`recompute cdc setup` made one (their tables that no stream carries, and every store without one,
by snapshot), Stripe's Events API every --stripe-interval s when STRIPE_API_KEY is set.

    Sources.open(wiring)      the streams and the snapshot jobs, held until close()
    sources.once()            one pass: each stream up to the server's flush LSN, the snapshots, Stripe
    sources.run(stop, ...)    on until `stop`: the streams polled continuously, snapshots every
                              --legacy-interval s (every SNAPSHOT_BESIDE_STREAMS_S beside streams), Stripe
                              every --stripe-interval s; a failure is logged when it starts and
                              when it ends (recompute.ingest), retried meanwhile
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
import stripe

from domain.legacy_tables import STORES
from ingestion.jobs import IngestJob
from ingestion.legacy.cdc.replication import ReplicationError
from ingestion.legacy.cdc.setup import has_stream
from ingestion.legacy.cdc.stream import LegacyChangeStream, NotSetUp
from ingestion.report import IngestReport
from recompute.bootstrap import Wiring
from ingestion.streamed_jobs import snapshot_jobs, snapshots_while_streaming
from projections.follow.health import Health

log = logging.getLogger("recompute.ingest")

FAILURES = (psycopg.Error, stripe.StripeError, OSError, ReplicationError, NotSetUp)
SNAPSHOT_BESIDE_STREAMS_S = 5.0  # the tables no stream carries, when the store has a stream
POLL_S = 0.05  # each stream's wait when it has nothing


@dataclass
class Sources:
    wiring: Wiring
    snapshots: list[IngestJob]
    stripe: list[IngestJob]
    streamed: list[str]
    streams: dict[str, LegacyChangeStream] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)  # streams to open again
    states: dict[str, Health] = field(default_factory=dict)
    sender_timeout_s: float | None = None  # a frozen reader's slot is released after it (project --follow: the lease)

    @classmethod
    def open(cls, wiring: Wiring, *, sender_timeout_s: float | None = None) -> Sources:
        jobs = wiring.ingest_jobs("all")
        legacy = [job for job in jobs if job.source in STORES]
        eventstore = wiring.dsns["eventstore"]
        streamed = [job.source for job in legacy if has_stream(job.source, wiring.dsns[job.source], eventstore)]
        sources = cls(wiring, snapshot_jobs(legacy, streamed, wiring.dsns),
                      [job for job in jobs if job.source == "stripe"], streamed, sender_timeout_s=sender_timeout_s)
        try:
            for store in streamed:
                sources._open_stream(store)
        except BaseException:
            sources.close()
            raise
        return sources

    def _open_stream(self, store: str) -> None:
        self.streams[store] = LegacyChangeStream(store=store, legacy_dsn=self.wiring.dsns[store],
                                                 eventstore_dsn=self.wiring.dsns["eventstore"],
                                                 sender_timeout_s=self.sender_timeout_s)
        if not self.health(store).is_down:
            log.info("the %s change stream is open", store, extra={"store": store})
        self.health(store).up("opened again")

    def health(self, source: str) -> Health:
        """A change stream's (by store) or a snapshot/Stripe pass's ("ingest") state, said once per change."""
        if source not in self.states:
            self.states[source] = Health(log, f"the {source} change stream" if source in STORES else "ingest",
                                         **({"store": source} if source in STORES else {"source": "snapshots"}))
        return self.states[source]

    def describe(self) -> str:
        streamed = ", ".join(self.streamed) or "none"
        return f"legacy stores through change streams: {streamed}; by snapshot: " + (
            ", ".join(f"{j.source}" + (f" ({', '.join(j.tables)})" if j.tables else "") for j in self.snapshots)
            or "nothing")

    def once(self) -> tuple[list[IngestReport], dict[str, int]]:
        """The snapshots and Stripe (the streams read meanwhile), then each stream up to the server's
        flush LSN: the reports, and what each stream appended."""
        before = {store: stream.appended for store, stream in self.streams.items()}
        reports = snapshots_while_streaming([*self.snapshots, *self.stripe], list(self.streams.values()), workers=3)
        for stream in self.streams.values():
            stream.catch_up()
        return reports, {store: stream.appended - before[store] for store, stream in self.streams.items()}

    def run(self, stop: Any, legacy_interval: float, stripe_interval: float) -> None:
        snapshot_every = max(legacy_interval, SNAPSHOT_BESIDE_STREAMS_S) if self.streams else legacy_interval
        next_snapshot = next_stripe = 0.0
        while not stop.is_set():
            self._reopen_broken()
            for store in list(self.streams):
                try:
                    self.streams[store].poll(POLL_S)
                except FAILURES as error:
                    self.health(store).down(error, gone="is broken")
                    self._drop(store)
                    self.broken.add(store)
            now = time.monotonic()
            due: list[IngestJob] = []
            if self.snapshots and now >= next_snapshot:
                due += self.snapshots
                next_snapshot = now + snapshot_every
            if self.stripe and now >= next_stripe:
                due += self.stripe
                next_stripe = now + stripe_interval
            if due:
                try:
                    snapshots_while_streaming(due, list(self.streams.values()), workers=1)
                    self.health("ingest").up()
                except FAILURES as error:
                    self.health("ingest").down(error, gone="failed")
            if not self.streams and not self.broken:
                stop.wait(legacy_interval)
            elif not self.streams:
                stop.wait(1.0)

    def _drop(self, store: str) -> None:
        stream = self.streams.pop(store)
        try:
            stream.close()
        except FAILURES:
            pass  # its connection is gone already

    def _reopen_broken(self) -> None:
        for store in sorted(self.broken):
            try:
                self._open_stream(store)
                self.broken.discard(store)
            except FAILURES as error:
                self.health(store).down(error, gone="is broken")  # said when it broke: not at every retry
                time.sleep(1.0)

    def close(self) -> None:
        for store in list(self.streams):
            self._drop(store)
