"""What the event store's readers ask of its tables before reading or writing them
(eventlog/tables_present.py): every reader asks the same way."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql

from eventlog.tables_present import has_columns, may_write
from simulation.harness.databases import scratch_databases

pytestmark = pytest.mark.integration


def test_a_table_has_the_columns_only_when_it_has_every_one_named():
    with scratch_databases("eventstore") as dsns, psycopg.connect(dsns["eventstore"], autocommit=True) as conn:
        assert not has_columns(conn, "kept", "a"), "no table: no columns"
        conn.execute("CREATE TABLE kept (a int, b text)")
        assert has_columns(conn, "kept", "a") and has_columns(conn, "kept", "a", "b")
        assert not has_columns(conn, "kept", "a", "c"), "one of them missing"
        conn.execute("ALTER TABLE kept ADD COLUMN c bytea")
        assert has_columns(conn, "kept", "a", "b", "c")


def test_a_session_may_write_a_table_only_when_granted_and_not_read_only():
    with scratch_databases("eventstore") as dsns, psycopg.connect(dsns["eventstore"], autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (a int)")
        assert may_write(conn, "kept", "INSERT", "UPDATE")
        conn.execute("SET default_transaction_read_only = on")
        assert not may_write(conn, "kept", "UPDATE")
        conn.execute("SET default_transaction_read_only = off")
        role = sql.Identifier(f"kept_reader_{uuid.uuid4().hex[:8]}")  # roles are the server's, not the database's
        conn.execute(sql.SQL("CREATE ROLE {}").format(role))
        conn.execute(sql.SQL("GRANT SELECT, UPDATE ON kept TO {}").format(role))
        conn.execute(sql.SQL("SET ROLE {}").format(role))
        try:
            assert may_write(conn, "kept", "UPDATE")
            assert not may_write(conn, "kept", "INSERT", "UPDATE"), "INSERT not granted"
        finally:
            conn.execute("RESET ROLE")
            conn.execute(sql.SQL("REVOKE ALL ON kept FROM {}").format(role))
            conn.execute(sql.SQL("DROP ROLE {}").format(role))
