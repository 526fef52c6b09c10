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

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import psycopg
from psycopg import sql

from domain.legacy_tables import TABLES_BY_STORE, LegacyTable
from eventlog.own_tables import exclusive_ingest, lift_block, record_block
from eventlog.stores import Stores
from ingestion.legacy.observe import Observations, known_rows
from ingestion.legacy.schema import log as log_schema
from ingestion.legacy.schema import problems_of, table_columns
from ingestion.legacy.tables import key_text, source_time
from ingestion.report import IngestReport, TableReport


class LegacySnapshotIngester:
    """Every table of one store in one snapshot, one after the other, in this process."""

    def __init__(self, *, store: str, stores: Stores, batch_size: int = 20_000,
                 tables: tuple[str, ...] | None = None) -> None:
        self._store = store
        self._tables = tables
        self._stores = stores
        self._batch_size = batch_size

    def table_runs(self, snapshot: Snapshot) -> list[TableIngest]:
        return [TableIngest(spec=spec, snapshot=snapshot, stores=self._stores, batch_size=self._batch_size)
                for spec in TABLES_BY_STORE[self._store] if self._tables is None or spec.table in self._tables]

    def run(self) -> IngestReport:
        report = IngestReport(source=self._store)
        with exported_snapshot(self._store, self._stores) as snapshot:
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
def exported_snapshot(store: str, stores: Stores) -> Iterator[Snapshot]:
    """Holds a REPEATABLE READ transaction open on the store and yields its exported snapshot."""
    with stores.connect(store, purpose="ingest snapshot") as conn:
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
    stores: Stores
    batch_size: int = 20_000

    def run(self) -> TableReport:
        spec, position, read_at = self.spec, self.snapshot.position, self.snapshot.read_at
        with (
            self.stores.connect(spec.store, purpose="ingest") as source,
            self.stores.connect(purpose="ingest") as log,
        ):
            source.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            source.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(self.snapshot.exported_id)))
            with exclusive_ingest(log, spec.name):
                blocked = problems_of(spec, table_columns(source, [spec.table]).get(spec.table))
                if blocked is not None:  # not the table recompute reads: none of its rows is decoded
                    report = TableReport(blocked=blocked)
                    with log.transaction():
                        if record_block(log, spec.name, blocked):
                            log_schema.warning("%s blocked: %s (its rows are not read, nothing of it is "
                                               "corrected, until its schema matches again)", spec.name, blocked)
                else:
                    report = self._ingest(spec, source, log, position, read_at)
                    with log.transaction():  # read again whole: a block it had is lifted
                        if lift_block(log, spec.name):
                            log_schema.warning("%s unblocked: its schema matches again, read again whole",
                                               spec.name)
            source.rollback()
        return report

    def _ingest(self, spec: LegacyTable, source: psycopg.Connection, log: psycopg.Connection, position: str,
                read_at: datetime) -> TableReport:
        report = TableReport()
        known = known_rows(log, spec.store, spec.table)
        log.commit()
        seen: set[str] = set()
        recorded_at = datetime.now(UTC)

        def at(row: dict, was_known: bool) -> datetime:
            return datetime.fromisoformat(source_time(spec, row, known=was_known, read_at=read_at))

        batch = Observations(spec.store)
        for raw in _rows_as_json(source, spec):
            report.rows_read += 1
            row = orjson.loads(raw)
            key = key_text(spec, row)
            seen.add(key)
            if batch.row(spec, raw, row, known.get(key), position=position, at=at, recorded_at=recorded_at) == "parked":
                report.parked += 1
            if len(batch) >= self.batch_size:
                report.appended += self._commit(log, spec, batch, position)
                batch = Observations(spec.store)
        for key, before in known.items():
            if key in seen:
                continue
            if batch.gone(spec, key, before, position=position, at=read_at, recorded_at=recorded_at):
                report.deleted += 1
            if len(batch) >= self.batch_size:
                report.appended += self._commit(log, spec, batch, position)
                batch = Observations(spec.store)
        report.appended += self._commit(log, spec, batch, position)
        return report

    @staticmethod
    def _commit(log: psycopg.Connection, spec: LegacyTable, batch: Observations, position: str) -> int:
        if not len(batch) and not batch.events:
            return 0
        return batch.commit(log, [(f"legacy:{spec.name}", {"position": position})], parked_position=position)


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
