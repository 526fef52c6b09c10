"""Snapshot ingestion of one legacy database into the account event log.

Each run reads every table of the store in one consistent snapshot (REPEATABLE READ) and compares
each row with the digest recorded when it was last ingested:

    new or changed row     -> LegacyRowObserved(row=...)    (or parked, with its reason)
    unchanged row          -> nothing
    row no longer there    -> LegacyRowObserved(row=None)

Events, the digests that now describe them, parked rows and the table's checkpoint commit in one
transaction per batch, so a crash loses nothing and a rerun appends nothing twice: the digest table
is exactly what the log already holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import psycopg
from psycopg import sql

from domain.events import LegacyRowObserved
from domain.trusted import trusted
from domain.legacy_tables import TABLES_BY_STORE, LegacyTable
from ingestion.legacy.tables import check_row, key_of, key_text, source_time, stream_of
from ingestion.report import IngestReport, TableReport
from eventlog.copy_insert import bulk_insert
from eventlog.account_log import append_events, encode_state_with_row
from eventlog.own_tables import exclusive_ingest, park, save_checkpoint


@dataclass(frozen=True)
class _Known:
    """What the log already holds of one row."""

    digest: bytes
    parked: bool  # the row as it is now was parked
    stream: str | None  # the stream holding the row's last recorded version; None: never recorded
    key_json: str


@dataclass
class _Batch:
    events: list[LegacyRowObserved] = field(default_factory=list)
    states: list[bytes | None] = field(default_factory=list)  # each event's stored state, when already encoded
    digests: list[tuple[str, bytes, bool, str | None, str]] = field(default_factory=list)  # rows seen before
    first_seen: list[tuple[str, bytes, bool, str | None, str]] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    parked: list[tuple[str, str, str]] = field(default_factory=list)  # key, reason, record json

    def __len__(self) -> int:
        return len(self.digests) + len(self.first_seen) + len(self.gone)

    def add(self, event: LegacyRowObserved, state: bytes | None = None) -> None:
        self.events.append(event)
        self.states.append(state)

    def record(self, item: tuple[str, bytes, bool, str | None, str], *, seen_before: bool) -> None:
        (self.digests if seen_before else self.first_seen).append(item)


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


class LegacySnapshotIngester:
    """Every table of one store in one snapshot, one after the other, in this process."""

    def __init__(self, *, store: str, source_dsn: str, eventstore_dsn: str, batch_size: int = 20_000) -> None:
        self._store = store
        self._source_dsn = source_dsn
        self._eventstore_dsn = eventstore_dsn
        self._batch_size = batch_size

    def table_runs(self, snapshot: Snapshot) -> list[TableIngest]:
        return [TableIngest(spec=spec, snapshot=snapshot, source_dsn=self._source_dsn,
                            eventstore_dsn=self._eventstore_dsn, batch_size=self._batch_size)
                for spec in TABLES_BY_STORE[self._store]]

    def run(self) -> IngestReport:
        report = IngestReport(source=self._store)
        with exported_snapshot(self._store, self._source_dsn) as snapshot:
            for run in self.table_runs(snapshot):
                report.tables[run.spec.table] = run.run()
        return report


@dataclass(frozen=True)
class Snapshot:
    """One consistent read of a store, exported so that other connections (and processes) share it."""

    store: str
    exported_id: str  # pg_export_snapshot(): valid while the exporting transaction is open
    position: str  # what events record as their position: the store and its snapshot's xid range
    read_at: datetime  # the transaction's timestamp: when a change the rows don't date happened, at the latest


@contextmanager
def exported_snapshot(store: str, source_dsn: str) -> Iterator[Snapshot]:
    """Holds a REPEATABLE READ transaction open on the store and yields its exported snapshot."""
    with psycopg.connect(source_dsn) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        exported, xids, read_at = conn.execute(
            "SELECT pg_export_snapshot(), pg_current_snapshot()::text, transaction_timestamp()").fetchone()
        yield Snapshot(store=store, exported_id=exported, position=f"{store}@{xids}", read_at=read_at)
        conn.rollback()


@dataclass(frozen=True)
class TableIngest:
    """One table of a store, read in the store's exported snapshot: the unit a worker process runs."""

    spec: LegacyTable
    snapshot: Snapshot
    source_dsn: str
    eventstore_dsn: str
    batch_size: int = 20_000

    def run(self) -> TableReport:
        spec, position, read_at = self.spec, self.snapshot.position, self.snapshot.read_at
        with (
            psycopg.connect(self.source_dsn, options="-c TimeZone=UTC") as source,
            psycopg.connect(self.eventstore_dsn) as log,
        ):
            source.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            source.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(self.snapshot.exported_id)))
            with exclusive_ingest(log, spec.name):
                report = self._ingest(spec, source, log, position, read_at)
            source.rollback()
        return report

    def _ingest(self, spec: LegacyTable, source: psycopg.Connection, log: psycopg.Connection, position: str,
                read_at: datetime) -> TableReport:
        report = TableReport()
        known = self._known_digests(log, spec)
        seen: set[str] = set()
        recorded_at = datetime.now(UTC)
        batch = _Batch()
        for raw in _rows_as_json(source, spec):
            report.rows_read += 1
            row = orjson.loads(raw)
            key = key_text(spec, row)
            seen.add(key)
            digest = _digest(raw.encode())
            before = known.get(key)
            if before is not None and before.digest == digest:
                continue
            reason = check_row(spec, row)
            row_key = key_of(spec, row)
            key_json = orjson.dumps(row_key).decode()
            if reason is not None:
                batch.parked.append((key, reason, raw))
                # the log may still hold the row's last good version: keep its stream, so a deletion reaches it
                batch.record((key, digest, True, before.stream if before else None, key_json),
                             seen_before=before is not None)
                report.parked += 1
            else:
                event, state = self._observed(spec, row, raw, row_key, before is not None and not before.parked,
                                              position, read_at, recorded_at)
                if before is not None and before.stream not in (None, event.originator_id):
                    # the row moved to another account: its old stream sees it go
                    batch.add(self._vanished(spec, before, position, read_at, recorded_at))
                batch.add(event, state)
                batch.record((key, digest, False, event.originator_id, key_json), seen_before=before is not None)
            if len(batch) >= self.batch_size:
                report.appended += self._commit(log, spec, batch, position)
                batch = _Batch()
        for key, before in known.items():
            if key in seen:
                continue
            batch.gone.append(key)
            if before.stream is not None:  # the log holds a version of it
                batch.add(self._vanished(spec, before, position, read_at, recorded_at))
                report.deleted += 1
            if len(batch) >= self.batch_size:
                report.appended += self._commit(log, spec, batch, position)
                batch = _Batch()
        report.appended += self._commit(log, spec, batch, position)
        return report

    @staticmethod
    def _observed(spec, row, raw, row_key, known, position, read_at, recorded_at) -> tuple[LegacyRowObserved, bytes]:
        """The event, and its stored state with the row's JSON text spliced in as PostgreSQL gave it."""
        fields = {"store": spec.store, "table": spec.table, "key": row_key, "position": position,
                  "source_time": datetime.fromisoformat(source_time(spec, row, known=known, read_at=read_at)),
                  "recorded_at": recorded_at}
        event = trusted(LegacyRowObserved, originator_id=stream_of(spec, row), originator_version=0, row=row,
                        **fields)  # the row was checked by check_row; every field is given
        return event, encode_state_with_row(fields, raw)

    @staticmethod
    def _vanished(spec, known: _Known, position, read_at, recorded_at) -> LegacyRowObserved:
        return trusted(
            LegacyRowObserved,
            originator_id=known.stream, originator_version=0, store=spec.store, table=spec.table,
            key=orjson.loads(known.key_json), position=position, source_time=read_at,
            recorded_at=recorded_at, row=None,
        )

    @staticmethod
    def _known_digests(log: psycopg.Connection, spec: LegacyTable) -> dict[str, _Known]:
        cur = log.execute(
            "SELECT key, digest, parked, stream, key_json FROM ingest_row_digest WHERE store = %s AND tbl = %s",
            (spec.store, spec.table),
        )
        known = {key: _Known(bytes(digest), parked, stream, key_json) for key, digest, parked, stream, key_json in cur}
        log.commit()
        return known

    def _commit(self, log: psycopg.Connection, spec: LegacyTable, batch: _Batch, position: str) -> int:
        if not len(batch) and not batch.events:
            return 0
        with log.transaction():
            appended = append_events(log, batch.events, batch.states)
            _write_digests(log, spec, batch)
            if batch.parked:
                with log.cursor() as cur:
                    park(cur, spec.store, [(spec.table, key, reason, raw, position) for key, reason, raw in batch.parked])
            save_checkpoint(log, f"legacy:{spec.name}", {"position": position})
        return appended


def _rows_as_json(source: psycopg.Connection, spec: LegacyTable) -> Iterator[str]:
    """Every row as PostgreSQL's own JSON text: canonical, so equal rows have equal digests.

    A server-side cursor read in blocks: ~340k rows/s here, where COPY's one-message-per-row
    reads managed ~20k (measured, see scripts/bench_ingest.py)."""
    query = sql.SQL("SELECT row_to_json(t)::text FROM {} t").format(sql.Identifier(spec.table))
    with source.cursor(name=f"snapshot_{spec.table}") as cur:
        cur.itersize = 20_000
        cur.execute(query)
        for (raw,) in cur:
            yield raw


def _write_digests(log: psycopg.Connection, spec: LegacyTable, batch: _Batch) -> None:
    columns = ("store", "tbl", "key", "digest", "parked", "stream", "key_json")
    with log.cursor() as cur:
        if batch.first_seen:  # no digest yet: a plain COPY
            with cur.copy(sql.SQL("COPY ingest_row_digest ({}) FROM STDIN").format(
                    sql.SQL(", ").join(map(sql.Identifier, columns)))) as copy:
                for item in batch.first_seen:
                    copy.write_row((spec.store, spec.table, *item))
        if batch.digests:
            bulk_insert(cur, "ingest_row_digest", columns, ((spec.store, spec.table, *item) for item in batch.digests),
                        on_conflict="(store, tbl, key) DO UPDATE SET digest = EXCLUDED.digest, "
                                    "parked = EXCLUDED.parked, stream = EXCLUDED.stream, key_json = EXCLUDED.key_json")
        if batch.gone:
            cur.execute(
                "DELETE FROM ingest_row_digest WHERE store = %s AND tbl = %s AND key = ANY(%s)",
                (spec.store, spec.table, batch.gone),
            )
