"""The change stream of one legacy store, recorded into the account event log.

    stream = LegacyChangeStream(store="billing_prod", stores=...)
    appended = stream.poll(max_wait=0.5)   # what the server sent; each transaction recorded once
    stream.catch_up()                      # up to the server's flush LSN at the call (`ingest`)
    stream.close()

Every complete transaction becomes `LegacyRowObserved` events timed at its commit, with its
commit LSN as their position, through the same digests as snapshot ingestion (observe.py): a
change to what the log already holds appends nothing. The transactions a poll received commit in
ONE event-store transaction with the end LSN of the last of them (ingest_checkpoint `cdc:<store>`);
only after that commit is the slot confirmed (standby status update), so a crash in between makes
the server send them again, and those whose end LSN <= the stored position are skipped.

Unchanged TOAST values (pgoutput's 'u') are carried forward from the last copy of the row: the
transaction's own earlier change, else the row's last event in the log (or its parked record).

The server sends a Relation message before a table's first change and again whenever its shape
changed; each is checked against the catalogue (ingestion/legacy/schema.py). A change under a
relation that does not match is not decoded: the table is *blocked* (recorded in the transaction
of the batch, logged once), and the rest of the store goes on. When a table's relation matches
again, its changes are recorded again and, after that batch commits, the table is read again whole
by snapshot (`resync_table`), which lifts the block: the rows changed meanwhile are not left held.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg

from domain.legacy_tables import TABLES_BY_STORE, LegacyTable
from eventlog.own_tables import record_block, recorded_blocks
from eventlog.stores import Stores
from eventlog.tables_present import has_tables
from eventlog.tail import last_row
from ingestion.legacy.cdc import pgoutput as po
from ingestion.legacy.cdc.names import checkpoint_source, lock_name, publication_name, slot_name
from ingestion.legacy.cdc.replication import ReplicationConnection, ReplicationError
from ingestion.legacy.cdc.row_json import json_value, row_json, text_of
from ingestion.legacy.observe import KnownRow, Observations, known_rows
from ingestion.legacy.schema import log as log_schema
from ingestion.legacy.schema import relation_problems, store_problems
from ingestion.legacy.snapshot import TableIngest, exported_snapshot
from ingestion.legacy.tables import key_text

STATUS_EVERY = 1.0  # seconds between standby status updates when idle: a reader that answers less often
# looks silent to a follower standing by (setup.slot_holder; wal_sender_timeout is 60 s by default)
TOUCH_EVERY = 10.0  # seconds between writes of an idle, caught-up stream's checkpoint time
BLOCK_CHECK_EVERY = 2.0  # seconds between looks at the live schema of a blocked table


class NotSetUp(Exception):
    """The store has no change stream yet (`recompute cdc setup`), or its handoff never finished."""


@dataclass
class _Txn:
    begin: po.Begin
    changes: list[tuple[po.Relation, po.Insert | po.Update | po.Delete | po.Truncate]] = field(default_factory=list)
    commit: po.Commit | None = None


def read_position(log: psycopg.Connection, store: str) -> dict[str, Any] | None:
    """The stream's stored position (None: none yet, also in an event store with no tables yet)."""
    if not has_tables(log, "ingest_checkpoint"):
        return None
    row = log.execute("SELECT position FROM ingest_checkpoint WHERE source = %s",
                      (checkpoint_source(store),)).fetchone()
    return row[0] if row else None


class LegacyChangeStream:
    """Keeps a replication connection and an event-store connection open between polls."""

    def __init__(self, *, store: str, stores: Stores,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), max_batch: int = 5_000,
                 sender_timeout_s: float | None = None) -> None:
        self.store = store
        self._specs = {spec.table: spec for spec in TABLES_BY_STORE[store]}
        self._clock = clock
        self._max_batch = max_batch
        self._stores = stores
        self._log = stores.connect(purpose="cdc")
        try:
            stored = read_position(self._log, store)
            self._log.rollback()
            with stores.connect(store, purpose="cdc") as legacy:
                self.slot = slot_name(legacy.info.dbname)
                exists = legacy.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s",
                                        (self.slot,)).fetchone()
            if stored is None or not exists:
                raise NotSetUp(f"{store}: no change stream (slot {self.slot}"
                               f"{' exists but its handoff never finished' if exists else ' is missing'}): "
                               "run `recompute cdc setup`")
            self.position = int(stored["lsn_int"])
            self._replication = ReplicationConnection(stores, store, sender_timeout_s=sender_timeout_s)
            self._replication.start(self.slot, publication_name(store), self.position)
        except BaseException:
            self.close()
            raise
        self._relations: dict[int, po.Relation] = {}
        self._types: dict[int, str] = {}  # oid -> typname, from the Type messages
        self._problems: dict[po.Relation, str | None] = {}  # each Relation message checked once
        self.blocked = {name: why for name, why in recorded_blocks(self._log).items()
                        if name.split(".", 1)[0] == store}  # "store.table" -> why: its changes are not decoded
        self._log.rollback()
        self.resynced: list[str] = []  # tables read again whole after their schema matched again
        self._last_block_check = 0.0
        self._open: _Txn | None = None
        self._complete: list[_Txn] = []
        self._wal_end = self.position  # the server's latest keepalive: all it decoded so far
        self._confirmed = self.position
        self._last_status = time.monotonic()
        self._last_touch = 0.0
        self.appended = 0
        self.parked = 0

    # -- reading --

    def poll(self, max_wait: float) -> int:
        """Reads what the server sent (waiting at most `max_wait` for the first message), records every
        complete transaction received, confirms them after the commit; returns the events appended."""
        message = self._replication.read(max_wait)
        budget = self._max_batch
        while message is not None:
            self._take(message)
            if len(self._complete) >= budget:  # (while a resync holds the store they pile up: memory)
                break
            message = self._replication.read(0)
        appended = 0
        if self._complete:
            recorded = self._record(self._complete)
            if recorded is not None:  # None: `ingest --resync` holds the store; they wait for the next poll
                appended, self._complete = recorded, []
        self._keep_alive()
        if self.blocked and self._open is None and not self._complete:
            self._recheck_blocked()
        return appended

    def _recheck_blocked(self) -> None:
        """A blocked table whose schema matches again but that nobody changes sends no Relation
        message: every BLOCK_CHECK_EVERY seconds its live schema is looked at, and once it matches it
        is read again whole (resync_table)."""
        if time.monotonic() - self._last_block_check < BLOCK_CHECK_EVERY:
            return
        self._last_block_check = time.monotonic()
        with self._stores.connect(self.store, purpose="cdc") as legacy:
            still = store_problems(legacy, self.store)
        for name in sorted(self.blocked.keys() - still.keys()):
            self.resync_table(name)

    def catch_up(self, *, idle_limit: float = 10.0) -> int:
        """Polls until everything the server had flushed when called is recorded; returns events appended."""
        with self._stores.connect(self.store, purpose="cdc", autocommit=True) as legacy:
            target = po.parse_lsn(legacy.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()[0])
        appended, idle_since = 0, time.monotonic()
        while not (self._open is None and max(self._wal_end, self.position) >= target):
            self._replication.confirm(self._confirmed, reply=True)  # asks for a keepalive: how far it decoded
            got = self.poll(0.2)
            appended += got
            if got or self._open is not None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > idle_limit:
                break
        return appended

    def _take(self, message: po.XLogData | po.Keepalive) -> None:
        if isinstance(message, po.Keepalive):
            self._wal_end = max(self._wal_end, message.wal_end)
            if message.reply_requested:
                self._replication.confirm(self._confirmed)
                self._last_status = time.monotonic()
            return
        decoded = po.decode(message.payload)
        if isinstance(decoded, po.Begin):
            self._open = _Txn(begin=decoded)
        elif isinstance(decoded, po.Commit):
            if self._open is not None:
                self._open.commit = decoded
                self._complete.append(self._open)
            self._open = None
        elif isinstance(decoded, po.Relation):
            self._relations[decoded.relid] = decoded
        elif isinstance(decoded, po.TypeInfo):
            self._types[decoded.oid] = decoded.name
        elif isinstance(decoded, (po.Insert, po.Update, po.Delete)):
            if self._open is not None:
                self._open.changes.append((self._relations[decoded.relid], decoded))
        elif isinstance(decoded, po.Truncate):
            if self._open is not None:
                for relid in decoded.relids:
                    self._open.changes.append((self._relations[relid], decoded))

    def _keep_alive(self) -> None:
        """Confirms what is recorded, and, with nothing in flight, all the server decoded (so the slot
        does not hold WAL of other tables and databases); at least every STATUS_EVERY seconds, so a
        reader standing by sees this one answering."""
        target = self.position
        if self._open is None and not self._complete:
            target = max(target, self._wal_end)
        if target > self._confirmed or time.monotonic() - self._last_status > STATUS_EVERY:
            if target > self._confirmed and time.monotonic() - self._last_touch > TOUCH_EVERY:
                self._touch(target)
            self._confirmed = max(self._confirmed, target)
            self._replication.confirm(self._confirmed)
            self._last_status = time.monotonic()

    def _touch(self, caught_up_to: int) -> None:
        """Idle and caught up: the checkpoint says so (its updated_at is when the stream was last known
        current, which `status` and the lag metric read), its position unchanged."""
        with self._log.transaction():
            self._log.execute(
                "UPDATE ingest_checkpoint SET updated_at = now(), position = position || jsonb_build_object("
                "'caught_up_to', %s::text) WHERE source = %s AND (position->>'lsn_int')::bigint = %s",
                (po.lsn_text(caught_up_to), checkpoint_source(self.store), self.position))
        self._last_touch = time.monotonic()

    # -- recording --

    def _record(self, txns: list[_Txn]) -> int | None:
        recorded_at = self._clock()
        log = self._log
        with log.transaction():
            if not log.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", (lock_name(self.store),)).fetchone()[0]:
                return None  # a resync holds the store: keep them and keep answering the server meanwhile
            stored = read_position(log, self.store)
            if stored is None or int(stored["lsn_int"]) != self.position:
                raise ReplicationError(  # `cdc setup` made the stream again (a new slot, its handoff), or `cdc drop` ran
                    f"{self.store}: the stream's stored position moved from {po.lsn_text(self.position)} to "
                    f"{stored['lsn'] if stored else 'none'} under this reader: reading it again from there")
            txns = [t for t in txns if t.commit is not None and t.commit.end_lsn > self.position]
            if not txns:
                return 0
            batch = _Recording(self, log, txns, recorded_at)
            last = txns[-1].commit
            assert last is not None
            appended = batch.observations.commit(
                log, [(checkpoint_source(self.store), position_of(last.end_lsn, self.slot))],
                parked_position=po.lsn_text(last.commit_lsn))
            with log.transaction():  # (a savepoint: the blocks commit with the batch they were found in)
                for name, why in batch.blocked.items():
                    if record_block(log, name, why):
                        log_schema.warning("%s blocked: %s (its changes are not recorded, nothing of it is "
                                           "corrected, until its schema matches again)", name, why)
        self.position = last.end_lsn
        self._last_touch = time.monotonic()
        self.appended += appended
        self.parked += len(batch.observations.parked)
        self._replication.confirm(self.position)
        self._confirmed = max(self._confirmed, self.position)
        self._last_status = time.monotonic()
        self.blocked.update(batch.blocked)
        for name in sorted(batch.matching - batch.blocked.keys()):
            if name in self.blocked:  # its changes come under a matching relation again: read it whole
                self.resync_table(name)
        return appended

    def fileno(self) -> int:
        return self._replication.fileno()

    def spec_of(self, relation: po.Relation) -> LegacyTable | None:
        return self._specs.get(relation.name)

    def problem(self, spec: LegacyTable, relation: po.Relation) -> str | None:
        """Why changes under this Relation message are not decoded (None: its table is the one read)."""
        if relation not in self._problems:
            self._problems[relation] = relation_problems(spec, relation, self._types)
        return self._problems[relation]

    def resync_table(self, name: str) -> None:
        """The table's schema matches again: it is read again whole by snapshot (through the same
        digests: only what changed meanwhile is appended), which lifts its block."""
        spec = self._specs[name.split(".", 1)[1]]
        with exported_snapshot(self.store, self._stores) as snapshot:
            report = TableIngest(spec=spec, snapshot=snapshot, stores=self._stores).run()
        if report.blocked is None:
            self.blocked.pop(name, None)
            self.resynced.append(name)
            self.appended += report.appended
            self.parked += report.parked

    def close(self) -> None:
        replication = getattr(self, "_replication", None)
        if replication is not None and not replication.closed:
            replication.close()
        if not self._log.closed:
            self._log.close()

    def __enter__(self) -> LegacyChangeStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def position_of(end_lsn: int, slot: str) -> dict[str, Any]:
    return {"lsn": po.lsn_text(end_lsn), "lsn_int": end_lsn, "slot": slot}


def _decoded(relation: po.Relation, values: po.Tuple) -> dict[str, Any]:
    """The columns whose values came, as JSON values (the key of a delete: its key columns)."""
    return {column.name: orjson.loads(json_value(column.type_oid, value))
            for column, value in zip(relation.columns, values, strict=True)
            if value is not None and not isinstance(value, po.Unchanged)}


class _Recording:
    """The observations of a run of transactions, in commit order, inside the caller's transaction."""

    def __init__(self, stream: LegacyChangeStream, log: psycopg.Connection, txns: list[_Txn],
                 recorded_at: datetime) -> None:
        self.stream, self.log, self.recorded_at = stream, log, recorded_at
        self.observations = Observations(stream.store)
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}  # the latest copy of each row seen here
        self.blocked: dict[str, str] = {}  # "store.table" -> why, as of the batch's last change of it
        self.matching: set[str] = set()  # tables whose changes here came under a matching relation
        self.known = self._known(txns)
        for txn in txns:
            assert txn.commit is not None
            position, at = po.lsn_text(txn.commit.commit_lsn), txn.commit.commit_time
            for relation, change in txn.changes:
                spec = self._readable(relation)
                if spec is not None:
                    self._change(spec, relation, change, position, at)

    def _readable(self, relation: po.Relation) -> LegacyTable | None:
        """The table of a change to record; None for a table not ours, or blocked by its relation."""
        spec = self.stream.spec_of(relation)
        if spec is None:
            return None
        why = self.stream.problem(spec, relation)
        if why is not None:
            self.blocked[spec.name] = why
            self.matching.discard(spec.name)
            return None
        self.blocked.pop(spec.name, None)
        self.matching.add(spec.name)
        return spec

    def _known(self, txns: list[_Txn]) -> dict[str, dict[str, KnownRow]]:
        keys: dict[str, set[str]] = {}
        for txn in txns:
            for relation, change in txn.changes:
                spec = self.stream.spec_of(relation)
                if spec is None or isinstance(change, po.Truncate) or self.stream.problem(spec, relation):
                    continue
                tuples = [change.new] if isinstance(change, po.Insert) else \
                    [change.old] if isinstance(change, po.Delete) else [change.new, change.old]
                for values in tuples:
                    if values is not None:
                        keys.setdefault(spec.table, set()).add(key_text(spec, _decoded(relation, values)))
        return {table: known_rows(self.log, self.stream.store, table, sorted(found)) for table, found in keys.items()}

    def _change(self, spec: LegacyTable, relation: po.Relation, change: Any, position: str, at: datetime) -> None:
        known = self.known.setdefault(spec.table, {})
        if isinstance(change, po.Truncate):
            everything = known_rows(self.log, spec.store, spec.table)
            keys = set(everything) | {key for (tbl, key) in self.observations.finals if tbl == spec.table}
            for key in sorted(keys):
                self._gone(spec, key, everything, position, at)
            return
        if isinstance(change, po.Delete):
            self._gone(spec, key_text(spec, _decoded(relation, change.old)), known, position, at)
            return
        new_key = key_text(spec, _decoded(relation, change.new))
        if isinstance(change, po.Update) and change.old is not None:
            old_key = key_text(spec, _decoded(relation, change.old))
            if old_key != new_key:  # the key itself changed: the old row is gone
                self._gone(spec, old_key, known, position, at)
        before = self.observations.current(spec.table, new_key, known)
        values, missing = self._carried(spec, relation, change.new, new_key, before)
        raw = row_json(relation.columns, values)
        row = orjson.loads(raw)
        if missing:
            self.observations.park(spec, new_key, raw, orjson.dumps({c: row.get(c) for c in spec.key}).decode(),
                                   before, f"unchanged TOAST value of {', '.join(missing)} not known "
                                           "(no earlier copy of the row): run `recompute ingest --resync`")
        else:
            self.observations.row(spec, raw, row, before, position=position, at=lambda _row, _known: at,
                                  recorded_at=self.recorded_at)
        self.rows[(spec.table, new_key)] = row

    def _gone(self, spec: LegacyTable, key: str, known: dict[str, KnownRow], position: str, at: datetime) -> None:
        before = self.observations.current(spec.table, key, known)
        if before is not None:
            self.observations.gone(spec, key, before, position=position, at=at, recorded_at=self.recorded_at)
        self.rows.pop((spec.table, key), None)

    def _carried(self, spec: LegacyTable, relation: po.Relation, values: po.Tuple, key: str,
                 before: KnownRow | None) -> tuple[list[str | None], list[str]]:
        """The values with each unchanged TOAST value taken from the last copy of the row; and the
        columns no copy knows."""
        if not any(isinstance(value, po.Unchanged) for value in values):
            return list(values), []  # type: ignore[arg-type]
        previous = self.rows.get((spec.table, key)) or self._last_copy(spec, key, before) or {}
        carried: list[str | None] = []
        missing = []
        for column, value in zip(relation.columns, values, strict=True):
            if isinstance(value, po.Unchanged):
                if column.name not in previous:
                    missing.append(column.name)
                carried.append(text_of(column.type_oid, previous.get(column.name)))
            else:
                carried.append(value)
        return carried, missing

    def _last_copy(self, spec: LegacyTable, key: str, before: KnownRow | None) -> dict[str, Any] | None:
        if before is None:
            return None
        if before.parked:
            found = self.log.execute(
                "SELECT record FROM parked_record WHERE source = %s AND tbl = %s AND key = %s ORDER BY id DESC LIMIT 1",
                (spec.store, spec.table, key)).fetchone()
        else:
            found = (last_row(self.log, before.stream, spec.store, spec.table, before.key_json),)
        return found[0] if found and isinstance(found[0], dict) else None


__all__ = ["LegacyChangeStream", "NotSetUp", "ReplicationError", "read_position", "position_of"]
