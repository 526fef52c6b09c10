"""A command that writes nothing brings an event store an earlier version made up to this version's
columns (eventlog/own_tables.upgrade_own_schema), and leaves a current one be."""

from __future__ import annotations

import psycopg
import pytest

from eventlog.own_tables import _LOCK_ID, UPGRADES, ensure_own_schema, upgrade_own_schema
from eventlog.tables_present import has_columns, has_tables
from simulation.harness.databases import scratch_databases

pytestmark = pytest.mark.integration


def test_a_current_store_is_not_locked_for_an_upgrade_it_does_not_need():
    with scratch_databases("eventstore") as dsns:
        ensure_own_schema(dsns["eventstore"])
        with psycopg.connect(dsns["eventstore"], autocommit=True) as writer:
            writer.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))  # a first run making our tables
            # waiting for that lock would fail here, not hang
            upgrade_own_schema(dsns["eventstore"] + " options='-c lock_timeout=2s'")


def test_a_store_made_before_a_column_gains_it():
    table, column, _ = UPGRADES[0]
    with scratch_databases("eventstore") as dsns, psycopg.connect(dsns["eventstore"], autocommit=True) as conn:
        ensure_own_schema(dsns["eventstore"])
        conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        upgrade_own_schema(dsns["eventstore"])
        assert has_columns(conn, table, column)


def test_a_store_not_made_yet_is_left_empty():
    with scratch_databases("eventstore") as dsns, psycopg.connect(dsns["eventstore"], autocommit=True) as conn:
        upgrade_own_schema(dsns["eventstore"])
        assert not has_tables(conn, "parked_record")
