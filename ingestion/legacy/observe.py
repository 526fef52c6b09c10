"""What observing one legacy row means, the same for a snapshot read and for the change stream.

A row is compared with what the log already holds of it (its digest in `ingest_row_digest`):

    new or changed row     -> LegacyRowObserved(row=...)    (or parked, with its reason)
    unchanged row          -> nothing
    row gone               -> LegacyRowObserved(row=None)   (when the log holds a version of it)

An `Observations` batch gathers the events, the digests that will describe them, and the parked
rows; `commit` writes them with the position that produced them in one transaction, so the digest
table is always exactly what the log holds. Only *when* differs between the two readers: a
snapshot times a change by the row's own columns (tables.source_time), the stream by its commit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg import sql

from domain.events import LegacyRowObserved
from domain.legacy_tables import LegacyTable
from domain.trusted import trusted
from eventlog.account_log import append_events, encode_event_with_row
from eventlog.copy_insert import bulk_insert
from eventlog.own_tables import park, save_checkpoint
from ingestion.legacy.tables import check_row, key_of, key_text, stream_of


@dataclass(frozen=True)
class KnownRow:
    """What the log already holds of one row."""

    digest: bytes
    parked: bool  # the row as it is now was parked
    stream: str | None  # the stream holding the row's last recorded version; None: never recorded
    key_json: str


def digest_of(raw: str) -> bytes:
    return hashlib.blake2b(raw.encode(), digest_size=16).digest()


Timing = Callable[[dict[str, Any], bool], datetime]  # (row, known before) -> when it changed


@dataclass
class Observations:
    """One transaction's worth of observations of one store's rows (any of its tables)."""

    store: str
    events: list[LegacyRowObserved] = field(default_factory=list)
    states: list[bytes | None] = field(default_factory=list)  # each event's stored state, when already encoded
    finals: dict[tuple[str, str], KnownRow | None] = field(default_factory=dict)  # (table, key) -> digest row; None: gone
    existed: set[tuple[str, str]] = field(default_factory=set)  # keys with a digest row before this batch
    parked: list[tuple[str, str, str, str]] = field(default_factory=list)  # table, key, reason, record json
    appended_by_table: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.finals)

    def _add(self, event: LegacyRowObserved, state: bytes | None = None) -> None:
        self.events.append(event)
        self.states.append(state)

    def _set(self, spec: LegacyTable, key: str, before: KnownRow | None, after: KnownRow | None) -> None:
        if (spec.table, key) not in self.finals and before is not None:
            self.existed.add((spec.table, key))
        self.finals[(spec.table, key)] = after

    def row(self, spec: LegacyTable, raw: str, row: dict[str, Any], before: KnownRow | None, *, position: str,
            at: Timing, recorded_at: datetime) -> str:
        """Observes the row as it now is; returns 'unchanged', 'parked' or 'appended'."""
        key = key_text(spec, row)
        digest = digest_of(raw)
        if before is not None and before.digest == digest:
            return "unchanged"
        row_key = key_of(spec, row)
        key_json = orjson.dumps(row_key).decode()
        reason = check_row(spec, row)
        if reason is not None:
            self.park(spec, key, raw, key_json, before, reason)
            return "parked"
        fields = {"store": spec.store, "table": spec.table, "key": row_key, "position": position,
                  "source_time": at(row, before is not None and not before.parked), "recorded_at": recorded_at}
        stream = stream_of(spec, row)
        event = trusted(LegacyRowObserved, originator_id=stream, originator_version=0, row=row,
                        **fields)  # the row was checked by check_row; every field is given
        if before is not None and before.stream not in (None, stream):
            # the row moved to another account: its old stream sees it go
            self._add(self._vanished(spec, before, position, fields["source_time"], recorded_at))
        self._add(event, encode_event_with_row(fields, raw))  # the row's JSON text spliced in as PostgreSQL gave it
        self._set(spec, key, before, KnownRow(digest, False, stream, key_json))
        return "appended"

    def park(self, spec: LegacyTable, key: str, raw: str, key_json: str, before: KnownRow | None, reason: str) -> None:
        """The row as it now is cannot be recorded: parked with its reason, once (its digest says so)."""
        self.parked.append((spec.table, key, reason, raw))
        # the log may still hold the row's last good version: keep its stream, so a deletion reaches it
        self._set(spec, key, before, KnownRow(digest_of(raw), True, before.stream if before else None, key_json))

    def current(self, table: str, key: str, known: dict[str, KnownRow]) -> KnownRow | None:
        """What the log holds of the row once this batch commits (`known`: before the batch)."""
        return self.finals[(table, key)] if (table, key) in self.finals else known.get(key)

    def gone(self, spec: LegacyTable, key: str, before: KnownRow, *, position: str, at: datetime,
             recorded_at: datetime) -> bool:
        """Observes that the row is no longer there; True when that appended an event."""
        self._set(spec, key, before, None)
        if before.stream is None:  # never recorded (only parked): nothing to tell the log
            return False
        self._add(self._vanished(spec, before, position, at, recorded_at))
        return True

    @staticmethod
    def _vanished(spec: LegacyTable, known: KnownRow, position: str, at: datetime,
                  recorded_at: datetime) -> LegacyRowObserved:
        return trusted(
            LegacyRowObserved,
            originator_id=known.stream, originator_version=0, store=spec.store, table=spec.table,
            key=orjson.loads(known.key_json), position=position, source_time=at, recorded_at=recorded_at, row=None,
        )

    def commit(self, log: psycopg.Connection, checkpoints: Iterable[tuple[str, dict[str, Any]]],
               parked_position: str) -> int:
        """Events, digests, parked rows and the checkpoints, in one transaction; returns events appended."""
        with log.transaction():
            appended = append_events(log, self.events, self.states)
            self._write_digests(log)
            if self.parked:
                with log.cursor() as cur:
                    park(cur, self.store, [(tbl, key, reason, raw, parked_position)
                                           for tbl, key, reason, raw in self.parked])
            for source, position in checkpoints:
                save_checkpoint(log, source, position)
        return appended

    def _write_digests(self, log: psycopg.Connection) -> None:
        columns = ("store", "tbl", "key", "digest", "parked", "stream", "key_json")
        fresh, upserts, gone = [], [], []
        for (tbl, key), known in self.finals.items():
            if known is None:
                if (tbl, key) in self.existed:
                    gone.append((tbl, key))
                continue
            item = (self.store, tbl, key, known.digest, known.parked, known.stream, known.key_json)
            (upserts if (tbl, key) in self.existed else fresh).append(item)
        with log.cursor() as cur:
            if fresh:  # no digest yet: a plain COPY
                with cur.copy(sql.SQL("COPY ingest_row_digest ({}) FROM STDIN").format(
                        sql.SQL(", ").join(map(sql.Identifier, columns)))) as copy:
                    for item in fresh:
                        copy.write_row(item)
            if upserts and len(upserts) < 1_000:  # a stream's few rows: one statement, no temporary twin
                cur.execute("INSERT INTO ingest_row_digest (store, tbl, key, digest, parked, stream, key_json) "
                            "SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::bytea[], %b::bool[], "
                            "%b::text[], %b::text[]) " + _ON_CONFLICT, [list(c) for c in zip(*upserts, strict=True)])
            elif upserts:
                bulk_insert(cur, "ingest_row_digest", columns, upserts, on_conflict=_ON_CONFLICT[12:])
            if gone:
                tables, keys = zip(*gone, strict=True)
                cur.execute("DELETE FROM ingest_row_digest d USING unnest(%b::text[], %b::text[]) g(tbl, key) "
                            "WHERE d.store = %s AND d.tbl = g.tbl AND d.key = g.key",
                            (list(tables), list(keys), self.store))


_ON_CONFLICT = ("ON CONFLICT (store, tbl, key) DO UPDATE SET digest = EXCLUDED.digest, parked = EXCLUDED.parked, "
                "stream = EXCLUDED.stream, key_json = EXCLUDED.key_json")


def known_rows(log: psycopg.Connection, store: str, table: str, keys: list[str] | None = None) -> dict[str, KnownRow]:
    """What the log holds of a table's rows (keys: only these), read in the caller's transaction."""
    query = "SELECT key, digest, parked, stream, key_json FROM ingest_row_digest WHERE store = %s AND tbl = %s"
    params: tuple[Any, ...] = (store, table)
    if keys is not None:
        query += " AND key = ANY(%s)"
        params += (keys,)
    return {key: KnownRow(bytes(digest), parked, stream, key_json)
            for key, digest, parked, stream, key_json in log.execute(query, params)}
