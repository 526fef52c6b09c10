"""Scratch databases on the real PostgreSQL (127.0.0.1:5432, or RECOMPUTE_TEST_PG, or the `server` given:
the tests' own clusters, tests/support/clusters.py): made per test, dropped after."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from domain.legacy_tables import STORES as LEGACY_STORES

# The server trusts loopback and ignores this password: it is there as a secret every run must keep to
# itself (simulation/harness/secrets.py; the runners of the command line look for it in what it prints).
PASSWORD = "rt-dsn-password-never-printed"
SERVER = os.environ.get("RECOMPUTE_TEST_PG", f"host=127.0.0.1 port=5432 user=postgres password={PASSWORD}")
STORES = (*LEGACY_STORES, "eventstore")


def dsn_for(database: str, server: str = SERVER) -> str:
    return f"{server} dbname={database}"


@contextmanager
def scratch_databases(*names: str, server: str = SERVER) -> Iterator[dict[str, str]]:
    """Creates one empty database per name (uniquely prefixed) on `server` and yields name -> DSN."""
    prefix = f"rt_{uuid.uuid4().hex[:10]}"
    created = {name: f"{prefix}_{name}" for name in names}
    with psycopg.connect(dsn_for("postgres", server), autocommit=True) as admin:
        for database in created.values():
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        yield {name: dsn_for(database, server) for name, database in created.items()}
    finally:
        with psycopg.connect(dsn_for("postgres", server), autocommit=True) as admin:
            drop_replication_slots(admin, list(created.values()))
            for database in created.values():
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))


def drop_replication_slots(admin: psycopg.Connection, databases: list[str]) -> None:
    """A logical slot keeps its database from being dropped and the server's WAL forever: drop those
    of these databases (stopping a reader still attached), also after a failed test."""
    for slot, pid in admin.execute("SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = ANY(%s)",
                                   (databases,)).fetchall():
        if pid is not None:
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
        for _ in range(50):
            try:
                admin.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                break
            except psycopg.errors.ObjectInUse:  # the terminated reader has not let go yet
                time.sleep(0.1)


def named_database(name: str, *, keep: bool = False) -> tuple[str, bool]:
    """A database that outlives the run (benchmarks): its DSN, created empty unless `keep` and it
    exists; and whether it was kept."""
    with psycopg.connect(dsn_for("postgres"), autocommit=True) as admin:
        if keep and admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return dsn_for(name), True
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return dsn_for(name), False
