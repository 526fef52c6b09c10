"""The change streams of a long-running reader (`project --follow`), checked rather than assumed.

    keeper = StreamKeeper(streamed, stores)  the stores `cdc setup` made a stream for
    keeper.open()                           opens each stream; one that cannot be opened is broken
    keeper.read(max_wait)                   waits on every open stream at once (one select), reads
                                            each, reopens the broken ones whose retry has come
    keeper.refresh()                        which tables each stream carries now: those of its
                                            publication while its slot exists; the rest are read
                                            by snapshot (`snapshot_tables`), from the next step on
    keeper.close()

A stream breaks (its server went away, its slot or publication was dropped, a backend was
terminated): it is closed and retried on its own schedule, capped exponential backoff with jitter
(`Backoff`), never in the path the healthy streams share. Each state change is one log line on
"recompute.cdc" (broken, why; still broken for another reason; open again) and one row of
cdc_stream_health, which `cdc status` and `status` read; a retry that fails for the same reason
says nothing. A slot another reader holds (a second follower's ingest) is not broken: this one
stands by, asking every half lease (`sender_timeout_s`) who holds the slot (`slot_holder`), and
takes the stream over when the other lets go; a holder that has not answered its server for longer
than the lease (frozen, its walsender not ended by wal_sender_timeout) is ended, with one line. While
a holder answers, nothing is opened (the open would only fail).

A table out of the publication (or a store whose slot is gone) is read by snapshot: the snapshot
compares every row with the digests, so what changed while it was not streamed is recorded at the
next snapshot. A table back in the publication is read by snapshot once more (what changed between
the last snapshot and its return), then through the stream.
"""

from __future__ import annotations

import logging
import random
import re
import select
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from domain.legacy_tables import TABLES_BY_STORE
from eventlog.stores import Stores, parse_dsn
from ingestion.legacy.cdc.names import publication_name, slot_name
from ingestion.legacy.cdc.pgoutput import lsn_text
from ingestion.legacy.cdc.replication import ReplicationError
from ingestion.legacy.cdc.setup import slot_holder
from ingestion.legacy.cdc.stream import LegacyChangeStream, NotSetUp

log = logging.getLogger("recompute.cdc")

STREAM_FAILURES = (psycopg.Error, OSError, ReplicationError, NotSetUp)


@dataclass(frozen=True)
class Backoff:
    """Pure: the wait before the retry after `failures` failed attempts in a row: base * 2^(failures-1),
    at most `cap`, drawn uniformly in its upper half (`draw` in [0, 1)), so readers broken together
    do not retry together."""

    base: float = 0.25
    cap: float = 5.0

    def delay(self, failures: int, draw: float) -> float:
        whole = min(self.cap, self.base * 2 ** min(max(failures - 1, 0), 32))
        return whole * (0.5 + draw / 2)


STANDBY = "in_use"  # the kind of a slot another reader holds (a second follower's ingest): not broken


@dataclass(frozen=True)
class Why:
    """Why a stream is broken: `kind` compares states (a retry failing for the same kind says
    nothing), `text` says it."""

    kind: str
    text: str


_SERVER_GONE = ("connection refused", "server closed the connection", "terminating connection",
                "the database system is shutting down", "the database system is starting up",
                "the database system is in recovery mode", "the database system is not yet accepting connections",
                "the server ended the replication stream",
                "connection timed out", "no route to host", "could not receive data", "could not send data",
                "ssl connection has been closed", "consuming input failed", "sending query failed")


def why_broken(error: BaseException | str, *, store: str, slot: str) -> Why:
    """Pure: the state a stream's failure puts it in."""
    text = " ".join(str(error).split())
    lowered = text.lower()
    publication = publication_name(store)
    if f'publication "{publication}" does not exist' in text:
        return Why("publication", f'publication "{publication}" does not exist at the stream\'s position '
                                  "(dropped, or dropped and made again): run `recompute cdc setup`")
    if re.search(r'replication slot "[^"]*" does not exist', text) or "is missing): run" in text:
        return Why("slot", f"slot {slot} is missing: run `recompute cdc setup`")
    if "exists but its handoff never finished" in text:
        return Why("handoff", f"slot {slot}: its handoff never finished: run `recompute cdc setup`")
    if re.search(r"replication slot \"[^\"]*\" is active for pid", lowered):
        return Why(STANDBY, f"slot {slot} is in use by another process")
    if any(gone in lowered for gone in _SERVER_GONE):
        return Why("server", f"its server cannot be reached ({text})")
    return Why(f"other: {text}", text)


HealthRow = tuple[str, str | None, datetime | None, list[str]]  # store, why broken, since, tables read by snapshot
PROBATION_S = 2.0  # a reopened stream is back once it read this long without failing (or recorded something)


@dataclass
class _Broken:
    why: Why
    since: datetime
    failures: int
    retry_at: float
    reopened_at: float | None = None  # open again, on probation: a dropped publication fails only at the first change


@dataclass
class StreamKeeper:
    streamed: list[str]
    stores: Stores
    backoff: Backoff = field(default_factory=Backoff)
    draw: Callable[[], float] = random.random
    monotonic: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    sender_timeout_s: float | None = None  # the streams' wal_sender_timeout (LegacyChangeStream)
    opener: Callable[[str], LegacyChangeStream] | None = None  # (tests: a fake stream) default: the real one
    saver: Callable[[list[HealthRow]], None] | None = None  # (tests) default: cdc_stream_health in the event store
    holder: Callable[[str, str, float], tuple[int, float | None, bool] | None] | None = None  # (tests) default: slot_holder
    streams: dict[str, LegacyChangeStream] = field(default_factory=dict)
    broken: dict[str, _Broken] = field(default_factory=dict)
    snapshot_tables: dict[str, tuple[str, ...]] = field(default_factory=dict)  # store -> tables read by snapshot
    _unsaved: set[str] = field(default_factory=set)  # health rows not yet written (the event store was away)

    def open(self, *, strict: bool = False) -> None:
        """Opens every stream; with `strict` a failure is raised (a one-pass run), else the stream is broken."""
        for store in self.streamed:
            try:
                self.streams[store] = self._open(store)
            except STREAM_FAILURES as error:
                if strict:
                    raise
                self._broke(store, error)
        self._save_health()

    def _open(self, store: str) -> LegacyChangeStream:
        if self.opener is not None:
            return self.opener(store)
        return LegacyChangeStream(store=store, stores=self.stores, sender_timeout_s=self.sender_timeout_s)

    # -- reading --

    def read(self, max_wait: float) -> int:
        """Reopens the broken streams whose retry has come, waits at most `max_wait` (less when a
        retry comes sooner) for any open stream to have something, reads each; returns events appended."""
        self._retry_due()
        open_ = list(self.streams.items())
        wait = max_wait
        if retries := [b.retry_at for store, b in self.broken.items() if store not in self.streams]:
            wait = max(0.0, min(wait, min(retries) - self.monotonic()))
        if open_:
            try:
                select.select([stream.fileno() for _, stream in open_], [], [], wait)
            except (OSError, ValueError):  # a socket closed under us: each poll below says which
                pass
        elif wait > 0:
            time.sleep(wait)
        appended = 0
        for store, stream in open_:
            try:
                got = stream.poll(0)
            except STREAM_FAILURES as error:
                self._close(store)
                self._broke(store, error)
                continue
            appended += got
            if store in self.broken:
                self._on_probation(store, stream, recorded=got > 0)
        self._save_health()
        return appended

    def _retry_due(self) -> None:
        for store in sorted(self.broken):
            state = self.broken[store]
            if store in self.streams or self.monotonic() < state.retry_at:
                continue
            if state.why.kind == STANDBY and self.sender_timeout_s is not None and self._held(store):
                state.failures += 1
                state.retry_at = self.monotonic() + self._delay(state.why, state.failures)
                continue
            try:
                self.streams[store] = self._open(store)
            except STREAM_FAILURES as error:
                self._broke(store, error)
                continue
            state.reopened_at = self.monotonic()

    def _held(self, store: str) -> bool:
        """Standing by: whether a holder that answers its server still has the slot. One silent for
        longer than the lease is ended first (then, as when the slot is free or its server cannot be
        asked, the stream is opened: the open says what is wrong)."""
        assert self.sender_timeout_s is not None
        slot = self._slot(store)
        try:
            if self.holder is not None:
                holder = self.holder(store, slot, self.sender_timeout_s)
            else:
                holder = slot_holder(store, self.stores, slot, silent_s=self.sender_timeout_s)
        except psycopg.Error:
            return False
        if holder is None:
            return False
        pid, silent, ended = holder
        if ended:
            log.warning("%s change stream held by process %d, silent for %.1f s (longer than the lease, %g s): "
                        "ended it to take the stream over", store, pid, silent or 0.0, self.sender_timeout_s,
                        extra={"store": store})
        return not ended

    def _on_probation(self, store: str, stream: LegacyChangeStream, *, recorded: bool) -> None:
        state = self.broken[store]
        if state.reopened_at is None or not (recorded or self.monotonic() - state.reopened_at >= PROBATION_S):
            return
        del self.broken[store]
        seconds = (self.now() - state.since).total_seconds()
        if state.why.kind == STANDBY:
            log.info("%s change stream taken over (slot %s, from %s) after %.1f s standing by",
                     store, stream.slot, lsn_text(stream.position), seconds, extra={"store": store})
        else:
            log.info("%s change stream open again (slot %s, from %s) after %.1f s broken",
                     store, stream.slot, lsn_text(stream.position), seconds, extra={"store": store})
        self._unsaved.add(store)

    def _broke(self, store: str, error: BaseException) -> None:
        why = why_broken(error, store=store, slot=self._slot(store))
        before = self.broken.get(store)
        failures = 1 if before is None else before.failures + 1
        retry_at = self.monotonic() + self._delay(why, failures)
        self.broken[store] = _Broken(why, self.now() if before is None else before.since, failures, retry_at)
        if before is not None and why.kind == before.why.kind:
            if why.kind != STANDBY:
                self._unsaved.add(store)  # again (`cdc setup` clears it), at most once a retry
            return
        if why.kind == STANDBY:  # another reader (another follower's) has the slot: it is read, not broken
            log.info("%s change stream read by another process (%s): standing by to take it over",
                     store, why.text, extra={"store": store})
        elif before is None or before.why.kind == STANDBY:
            log.warning("%s change stream broken: %s; retrying with backoff (up to %g s apart)",
                        store, why.text, self.backoff.cap, extra={"store": store})
        else:
            log.warning("%s change stream still broken, now: %s", store, why.text, extra={"store": store})
        self._unsaved.add(store)

    def _delay(self, why: Why, failures: int) -> float:
        """The wait before the next retry; standing by, at most half a lease (a frozen holder is
        taken over within a lease)."""
        delay = self.backoff.delay(failures, self.draw())
        if why.kind == STANDBY and self.sender_timeout_s is not None:
            delay = min(delay, self.sender_timeout_s / 2)
        return delay

    def _slot(self, store: str) -> str:
        stream = self.streams.get(store)
        if stream is not None:
            return stream.slot
        return slot_name(parse_dsn(self.stores.dsn(store)).get("dbname") or "")

    def _close(self, store: str) -> None:
        stream = self.streams.pop(store)
        try:
            stream.close()
        except STREAM_FAILURES:
            pass  # its connection is gone already

    # -- which tables each stream carries --

    def refresh(self) -> dict[str, tuple[str, ...]]:
        """Reads which tables each store's stream carries now (its publication's, while its slot
        exists) and keeps the others in `snapshot_tables`; returns, per store, the tables that came
        back into its stream, to be read by snapshot once more. A store whose server cannot be asked
        keeps what it had."""
        back: dict[str, tuple[str, ...]] = {}
        for store in self.streamed:
            try:
                carried = streamed_tables(store, self.stores)
            except psycopg.Error:
                continue
            left = tuple(spec.table for spec in TABLES_BY_STORE[store] if spec.table not in carried)
            before = self.snapshot_tables.get(store)
            self.snapshot_tables[store] = left
            if before is None and left:
                log.info("%s: %s not carried by its change stream (%s): read by snapshot",
                         store, ", ".join(left), _not_carried(store, carried), extra={"store": store})
            elif before is not None and left != before:
                if gone := sorted(set(left) - set(before)):
                    log.warning("%s: %s left its change stream (%s): read by snapshot from the next step",
                                store, ", ".join(gone), _not_carried(store, carried), extra={"store": store})
                if returned := tuple(sorted(set(before) - set(left))):
                    back[store] = returned
                    log.info("%s: %s back in its change stream: read by snapshot once more, then through it",
                             store, ", ".join(returned), extra={"store": store})
            if left != before:
                self._unsaved.add(store)
        self._save_health()
        return back

    # -- what `cdc status` and `status` read --

    def _save_health(self) -> None:
        if not self._unsaved:
            return
        broken = {store: state for store, state in self.broken.items() if state.why.kind != STANDBY}
        rows = [(store, broken[store].why.text if store in broken else None,
                 broken[store].since if store in broken else None,
                 list(self.snapshot_tables.get(store, ()))) for store in sorted(self._unsaved)]
        try:
            if self.saver is not None:
                self.saver(rows)
            else:
                with self.stores.connect(purpose="cdc", autocommit=True) as conn:
                    save_health(conn, rows)
        except psycopg.Error:
            return  # the event store is away too: written at the next state change or retry
        self._unsaved.clear()

    def close(self) -> None:
        for store in list(self.streams):
            self._close(store)

    @property
    def open_streams(self) -> list[LegacyChangeStream]:
        return list(self.streams.values())


def streamed_tables(store: str, stores: Stores) -> set[str]:
    """The tables the store's stream carries now: its publication's, while its slot exists."""
    with stores.connect(store, purpose="cdc") as legacy:
        return {name for (name,) in legacy.execute(
            "SELECT tablename FROM pg_publication_tables WHERE pubname = %s "
            "AND EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = %s)",
            (publication_name(store), slot_name(legacy.info.dbname)))}


def tables_not_streamed(store: str, stores: Stores) -> tuple[str, ...]:
    carried = streamed_tables(store, stores)
    return tuple(spec.table for spec in TABLES_BY_STORE[store] if spec.table not in carried)


def save_health(conn: psycopg.Connection, rows: Iterable[HealthRow]) -> None:
    for store, broken, since, tables in rows:
        conn.execute(
            "INSERT INTO cdc_stream_health (store, broken, broken_since, snapshot_tables, updated_at) "
            "VALUES (%s, %s, %s, %s, now()) ON CONFLICT (store) DO UPDATE SET broken = EXCLUDED.broken, "
            "broken_since = EXCLUDED.broken_since, snapshot_tables = EXCLUDED.snapshot_tables, updated_at = now()",
            (store, broken, since, tables))


def _not_carried(store: str, carried: set[str]) -> str:
    return f"not in publication {publication_name(store)}" if carried else \
        f"publication {publication_name(store)} or the slot is missing"
