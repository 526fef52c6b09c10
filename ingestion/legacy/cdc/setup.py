"""`cdc setup`, `cdc drop` and `cdc status` for one legacy store: the publication, the slot, the handoff.

The handoff, without gap or overlap: the slot is created on a replication connection with an
exported snapshot (`CREATE_REPLICATION_SLOT ... (SNAPSHOT 'export')`); while that connection stays
open, every published table is read in that snapshot (REPEATABLE READ + SET TRANSACTION SNAPSHOT,
the snapshot ingester's own TableIngest) and compared with what the log already holds (the digest
table: the log may hold a batch-ingested history), appending only real differences; then the
slot's consistent point is stored as the stream's position. Every change committed after the
snapshot is in the slot, every change before it is in the snapshot.

A store whose slot exists but whose position was never stored (a setup that died mid-handoff)
gets a new slot and the handoff again: the digests make the second one append only what is missing.
So does a stream broken under a running reader (`setup` repairs it while followers run): its slot
dropped (or lost), or its publication dropped (a slot sees a publication only from a position after
the publication was made, so a publication made again needs a new slot). The handoff holds the
store's lock: the reader records nothing until the new position is stored, then reads from it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from domain.legacy_tables import TABLES_BY_STORE, LegacyTable
from eventlog.own_tables import save_checkpoint
from eventlog.stores import Stores
from eventlog.tables_present import has_tables
from ingestion.legacy.cdc.names import checkpoint_source, lock_name, publication_name, slot_name
from ingestion.legacy.cdc.pgoutput import lsn_text
from ingestion.legacy.cdc.replication import ReplicationConnection
from ingestion.legacy.cdc.server_check import ServerSettings, TableIdentity, missing_settings, why_not_published
from ingestion.legacy.cdc.stream import position_of, read_position
from ingestion.legacy.snapshot import Snapshot, TableIngest


class ServerNotReady(Exception):
    def __init__(self, store: str, missing: list[str]) -> None:
        super().__init__(f"{store}: the server lacks {'; '.join(missing)}")
        self.store, self.missing = store, missing


class SlotInUse(Exception):
    pass


@dataclass
class SetupReport:
    store: str
    slot: str
    publication: str
    published: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # table -> why it is not published
    already: bool = False
    newly_published: list[str] = field(default_factory=list)  # added to an existing stream: resync once
    repaired: str = ""  # what was broken, when the stream existed and was made again
    position: str = ""
    appended: int = 0


def server_settings(conn: psycopg.Connection, slot: str) -> ServerSettings:
    row = conn.execute(
        "SELECT current_setting('wal_level'), current_user, rolreplication OR rolsuper, "
        "current_setting('max_replication_slots')::int, (SELECT count(*) FROM pg_replication_slots), "
        "current_setting('max_wal_senders')::int, (SELECT count(*) FROM pg_stat_replication), "
        "EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = %s) "
        "FROM pg_roles WHERE rolname = current_user", (slot,)).fetchone()
    assert row is not None
    return ServerSettings(*row)


def table_identities(conn: psycopg.Connection, specs: tuple[LegacyTable, ...]) -> list[TableIdentity]:
    found = {name: (ident, pk) for name, ident, pk in conn.execute(
        "SELECT c.relname, c.relreplident::text, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid "
        "AND i.indisprimary) FROM pg_class c WHERE c.relkind IN ('r', 'p') AND c.relname = ANY(%s) "
        "AND pg_table_is_visible(c.oid)", ([spec.table for spec in specs],))}
    return [TableIdentity(spec.table, spec.table in found, *found.get(spec.table, ("n", False))) for spec in specs]


def check_server(store: str, stores: Stores) -> None:
    with stores.connect(store, purpose="cdc setup") as conn:
        missing = missing_settings(server_settings(conn, slot_name(conn.info.dbname)))
    if missing:
        raise ServerNotReady(store, missing)


def setup_store(store: str, stores: Stores) -> SetupReport:
    with stores.connect(store, purpose="cdc setup", autocommit=True) as legacy, \
            stores.connect(purpose="cdc setup") as log:
        slot = slot_name(legacy.info.dbname)
        settings = server_settings(legacy, slot)
        if missing := missing_settings(settings):
            raise ServerNotReady(store, missing)
        report = SetupReport(store=store, slot=slot, publication=publication_name(store))
        _choose_tables(legacy, report)
        stored = read_position(log, store)
        broken = stream_broken(log, store)
        log.rollback()
        publication_exists = _publication_exists(legacy, report.publication)
        publication_unseen = f'publication "{report.publication}" does not exist' in (broken or "")
        if settings.has_slot and stored is not None and stored.get("slot") == slot:
            if publication_exists and not publication_unseen:
                report.already, report.position = True, stored["lsn"]
                before = {name for (name,) in legacy.execute(
                    "SELECT tablename FROM pg_publication_tables WHERE pubname = %s", (report.publication,))}
                _publish(legacy, report)  # tables may have gained a key since
                report.newly_published = [table for table in report.published if table not in before]
                return report
            report.repaired = (f"publication {report.publication} was missing: made it again" if not publication_exists
                               else f"the stream could not see publication {report.publication} at its position")
            _drop_slot(legacy, slot, take_over=True)
        elif settings.has_slot:  # a handoff that never finished: start it again
            _drop_slot(legacy, slot)
        elif stored is not None:
            report.repaired = f"slot {slot} was missing"
        log.execute("SELECT pg_advisory_lock(hashtext(%s))", (lock_name(store),))  # the reader waits (session lock)
        log.commit()
        _publish(legacy, report)
        replication = ReplicationConnection(stores, store)
        try:
            consistent_point, exported = replication.create_slot(slot)
            read_at = legacy.execute("SELECT now()").fetchone()[0]
            snapshot = Snapshot(store=store, exported_id=exported, position=f"{store}@{lsn_text(consistent_point)}",
                                read_at=read_at)
            specs = {spec.table: spec for spec in TABLES_BY_STORE[store]}
            for table in report.published:
                report.appended += TableIngest(spec=specs[table], snapshot=snapshot, stores=stores).run().appended
            with log.transaction():
                log.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock_name(store),))
                save_checkpoint(log, checkpoint_source(store), position_of(consistent_point, slot))
                if has_tables(log, "cdc_stream_health"):  # its reader says so again if it still cannot read it
                    log.execute("UPDATE cdc_stream_health SET broken = NULL, broken_since = NULL, updated_at = now() "
                                "WHERE store = %s", (store,))
            report.position = lsn_text(consistent_point)
        finally:
            replication.close()
        return report


def _choose_tables(legacy: psycopg.Connection, report: SetupReport) -> None:
    for identity in table_identities(legacy, TABLES_BY_STORE[report.store]):
        reason = why_not_published(identity)
        if reason is None:
            report.published.append(identity.table)
        else:
            report.refused[identity.table] = reason


def owner_sql(store: str, stores: Stores) -> str:
    """What `setup` runs that only the tables' owner may (the publication), for `cdc setup --print-sql`:
    once it has run, a role with REPLICATION and `grants`' privileges makes the slot and streams."""
    with stores.connect(store, purpose="cdc setup") as legacy:
        report = SetupReport(store=store, slot=slot_name(legacy.info.dbname), publication=publication_name(store))
        _choose_tables(legacy, report)
        statement = _publication_statement(report, exists=False)
        return f"-- {store}: run as the tables' owner in database {legacy.info.dbname}\n{statement.as_string(legacy)};"


def stream_broken(log: psycopg.Connection, store: str) -> str | None:
    """Why the store's reader last found its stream broken (None: read, or no reader said)."""
    if not has_tables(log, "cdc_stream_health"):
        return None
    row = log.execute("SELECT broken FROM cdc_stream_health WHERE store = %s", (store,)).fetchone()
    return row[0] if row else None


def _publication_exists(legacy: psycopg.Connection, publication: str) -> bool:
    return legacy.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,)).fetchone() is not None


def _publish(legacy: psycopg.Connection, report: SetupReport) -> None:
    """Creates the publication, or sets its tables: left alone when it already publishes exactly them
    (the tables' owner made it, `cdc setup --print-sql`, and the daily role may not alter it)."""
    exists = legacy.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (report.publication,)).fetchone()
    if exists:
        current = {name for (name,) in legacy.execute(
            "SELECT tablename FROM pg_publication_tables WHERE pubname = %s", (report.publication,))}
        if not report.published or current == set(report.published):
            return
    legacy.execute(_publication_statement(report, exists=exists is not None))


def _publication_statement(report: SetupReport, *, exists: bool) -> sql.Composed:
    name = sql.Identifier(report.publication)
    if not report.published:
        return sql.SQL("CREATE PUBLICATION {}").format(name)
    tables = sql.SQL(", ").join(map(sql.Identifier, report.published))
    verb = "ALTER PUBLICATION {} SET TABLE {}" if exists else "CREATE PUBLICATION {} FOR TABLE {}"
    return sql.SQL(verb).format(name, tables)


def _drop_slot(legacy: psycopg.Connection, slot: str, *, take_over: bool = False, within_s: float = 10.0) -> None:
    """Drops the slot; one in use is refused, unless `take_over` (a broken stream `setup` makes again):
    then its reader's connection is terminated (its reader retries, and reads the new slot)."""
    deadline = time.monotonic() + within_s
    while True:
        active = legacy.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
        if not active:
            return
        if active[0] is not None and not take_over:
            raise SlotInUse(f"slot {slot} is in use by process {active[0]} (a running `ingest --follow` or "
                            "`project --follow`?): stop it first")
        if active[0] is not None:
            legacy.execute("SELECT pg_terminate_backend(%s, 5000)", (active[0],))
        try:
            legacy.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            return
        except psycopg.errors.ObjectInUse:  # its reader came back meanwhile
            if time.monotonic() > deadline:
                raise SlotInUse(f"slot {slot} stayed in use by its reader for {within_s:g} s") from None
            time.sleep(0.05)


SLOT_HOLDER = """
SELECT s.active_pid, extract(epoch FROM now() - coalesce(r.reply_time, r.backend_start))::float8,
       CASE WHEN coalesce(r.reply_time, r.backend_start) < now() - make_interval(secs => %s)
            THEN pg_terminate_backend(s.active_pid) ELSE false END
FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
WHERE s.slot_name = %s AND s.active_pid IS NOT NULL
"""


def slot_holder(store: str, stores: Stores, slot: str, *, silent_s: float) -> tuple[int, float | None, bool] | None:
    """The process holding `slot` (None: the slot is free), how long it has not answered its server
    (its last standby reply, or its start if it never answered; None: not ours to see), and whether
    it was ended for being silent longer than `silent_s` seconds. A frozen follower's reader is
    ended by its own walsender after wal_sender_timeout, which did not always happen (issue 17):
    this is the same rule applied by the reader standing by."""
    with stores.connect(store, purpose="cdc standby", autocommit=True) as legacy:
        row = legacy.execute(SLOT_HOLDER, (silent_s, slot)).fetchone()
    return None if row is None else (int(row[0]), None if row[1] is None else float(row[1]), bool(row[2]))


def drop_store(store: str, stores: Stores) -> list[str]:
    """Removes the slot, the publication and the stored position; returns what was removed."""
    removed = []
    with stores.connect(store, purpose="cdc drop", autocommit=True) as legacy:
        slot, publication = slot_name(legacy.info.dbname), publication_name(store)
        if legacy.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone():
            _drop_slot(legacy, slot)
            removed.append(f"slot {slot}")
        if legacy.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,)).fetchone():
            legacy.execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(publication)))
            removed.append(f"publication {publication}")
    with stores.connect(purpose="cdc drop") as log:
        if has_tables(log, "ingest_checkpoint"):
            log.execute("DELETE FROM ingest_checkpoint WHERE source = %s", (checkpoint_source(store),))
    return removed


def has_stream(store: str, stores: Stores) -> bool:
    """The store has a slot and a stored position: `ingest` reads its stream rather than a snapshot."""
    with stores.connect(store, purpose="cdc") as legacy:
        slot = slot_name(legacy.info.dbname)
        if not legacy.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone():
            return False
    with stores.connect(purpose="cdc") as log:
        stored = read_position(log, store)
    return stored is not None and stored.get("slot") == slot


def published_tables(store: str, stores: Stores) -> set[str]:
    with stores.connect(store, purpose="cdc") as legacy:
        return {name for (name,) in legacy.execute(
            "SELECT tablename FROM pg_publication_tables WHERE pubname = %s", (publication_name(store),))}


def stream_status(store: str, stores: Stores, *, now: datetime | None = None,
                  warn_retained_bytes: int = 1 << 30) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    with stores.connect(store, purpose="cdc status") as legacy:
        slot = slot_name(legacy.info.dbname)
        server_flush = legacy.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()[0]
        found = legacy.execute(
            "SELECT active, active_pid, confirmed_flush_lsn::text, restart_lsn::text, wal_status, safe_wal_size, "
            "pg_wal_lsn_diff(pg_current_wal_flush_lsn(), restart_lsn)::bigint, "
            "pg_wal_lsn_diff(pg_current_wal_flush_lsn(), confirmed_flush_lsn)::bigint "
            "FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
        publication_exists = _publication_exists(legacy, publication_name(store))
        published = {name for (name,) in legacy.execute(
            "SELECT tablename FROM pg_publication_tables WHERE pubname = %s", (publication_name(store),))}
    stored, recorded_at, broken = None, None, None
    with stores.connect(purpose="cdc status") as log:
        if has_tables(log, "ingest_checkpoint"):
            row = log.execute("SELECT position, updated_at FROM ingest_checkpoint WHERE source = %s",
                              (checkpoint_source(store),)).fetchone()
            if row:
                stored, recorded_at = row
        broken = stream_broken(log, store)
    status: dict[str, Any] = {"source": store, "slot": slot, "publication": publication_name(store),
                              "exists": found is not None, "server_flush_lsn": server_flush,
                              "position": stored["lsn"] if stored else None}
    if found is None and stored is None:
        status.update(state="none", warning="no slot: run `recompute cdc setup`")
        return status
    carried = published if found is not None else set()
    status["snapshot_tables"] = [spec.table for spec in TABLES_BY_STORE[store] if spec.table not in carried]
    status["state"], status["reason"] = "streaming", None
    if found is None:
        status.update(state="broken", reason=f"slot {slot} is missing (dropped, or lost in a failover): "
                                             "run `recompute cdc setup`")
        return status
    if not publication_exists:
        status.update(state="broken", reason=f'publication "{publication_name(store)}" does not exist: '
                                             "run `recompute cdc setup`")
    elif broken:
        status.update(state="broken", reason=broken)
    active, pid, confirmed, restart, wal_status, safe_size, retained, lag_bytes = found
    lag_seconds = 0.0 if not lag_bytes or lag_bytes <= 0 or recorded_at is None else \
        max(0.0, (now - recorded_at).total_seconds())
    status.update({"active": active, "active_pid": pid, "confirmed_flush_lsn": confirmed, "restart_lsn": restart,
                   "lag_bytes": max(0, int(lag_bytes or 0)), "lag_seconds": round(lag_seconds, 3),
                   "retained_bytes": int(retained or 0), "wal_status": wal_status, "safe_wal_size": safe_size,
                   "last_recorded_at": recorded_at.isoformat() if recorded_at else None})
    if stored is None:
        status["warning"] = "the handoff never finished: run `recompute cdc setup` again"
    elif wal_status in ("unreserved", "lost"):
        status["warning"] = f"wal_status {wal_status}: the slot is losing WAL it needs; resync may be needed"
    elif status["retained_bytes"] > warn_retained_bytes:
        status["warning"] = (f"the slot retains {status['retained_bytes'] / 2**20:.0f} MiB of WAL "
                             f"(over {warn_retained_bytes / 2**20:.0f} MiB): is its reader running?")
    return status


@contextmanager
def resync_lock(stores: Stores, store: str) -> Iterator[None]:
    """Held by `ingest --resync` around its whole run (taken before its snapshot is exported): the
    stream records nothing meanwhile, and the snapshot sees every change the stream recorded."""
    with stores.connect(purpose="ingest resync", autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (lock_name(store),))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (lock_name(store),))
