"""Helpers for the change-stream tests: a stream per store, read until a condition holds; a slot
dropped under its reader, as a DBA would."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg

from domain.events import LegacyRowObserved
from eventlog.account_log import open_log
from eventlog.stores import Stores
from ingestion.legacy.cdc.stream import LegacyChangeStream


@contextmanager
def a_stream(dsns: dict[str, str], store: str) -> Iterator[LegacyChangeStream]:
    stream = LegacyChangeStream(store=store, stores=Stores.from_dsns(dsns))
    try:
        yield stream
    finally:
        stream.close()


def read_until(stream: LegacyChangeStream, done: Callable[[], bool], *, limit: float = 20.0) -> int:
    """Polls until `done()` (checked after each poll), at most `limit` seconds; returns events appended."""
    appended, deadline = 0, time.monotonic() + limit
    while True:
        appended += stream.poll(0.2)
        if done() or time.monotonic() > deadline:
            return appended


def events_of(dsns: dict[str, str], stream: str = "acc_000042") -> list[LegacyRowObserved]:
    log = open_log(dsns["eventstore"])
    try:
        return [e for e in log.stream(stream) if isinstance(e, LegacyRowObserved)]
    finally:
        log.close()


def event_count(dsns: dict[str, str]) -> int:
    with psycopg.connect(dsns["eventstore"]) as conn:
        return conn.execute("SELECT count(*) FROM recompute_events").fetchone()[0]


def slots_of(dsns: dict[str, str]) -> list[str]:
    databases = [psycopg.conninfo.conninfo_to_dict(dsn)["dbname"] for dsn in dsns.values()]
    with psycopg.connect(dsns["eventstore"]) as conn:
        return [name for (name,) in conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = ANY(%s) ORDER BY 1", (databases,))]


def drop_slot(dsn: str) -> None:
    """The slot of the database `dsn` names dropped, its reader terminated first (and again, if the
    reader came back before the drop)."""
    database = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(200):
            conn.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                         "WHERE database = %s AND active_pid IS NOT NULL", (database,))
            try:
                conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                             "WHERE database = %s", (database,))
                return
            except psycopg.errors.ObjectInUse:
                time.sleep(0.05)
    raise AssertionError(f"the slot of {database} stayed in use")
