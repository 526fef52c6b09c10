"""Finding the parked rows of a range (legacy_rows.parked_rows: every backfill partition, plan
range and follower step asks) reads the parked digests only, not every row digest ingest keeps:
at 100,000 accounts that table holds 3.2M rows and one read of it took 0.5 s of the server's time,
32 times a backfill."""

from __future__ import annotations

import time

import psycopg
import pytest

from projections.legacy_rows import AccountRange, parked_rows
from eventlog.own_tables import ensure_own_schema
from simulation.harness.databases import scratch_databases

pytestmark = pytest.mark.integration


def digests_read(dsn: str) -> int:
    """Rows of ingest_row_digest read by sequential scans so far, once every other session of the
    database has ended (a backend flushes its statistics before it leaves pg_stat_activity)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(100):
            if not conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                "AND pid <> pg_backend_pid()").fetchone()[0]:
                break
            time.sleep(0.05)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return conn.execute("SELECT coalesce(seq_tup_read, 0) FROM pg_stat_user_tables "
                            "WHERE relname = 'ingest_row_digest'").fetchone()[0]


def test_finding_the_parked_rows_reads_only_the_parked_digests():
    with scratch_databases("eventstore") as dsns:
        es = dsns["eventstore"]
        ensure_own_schema(es)
        with psycopg.connect(es) as conn:
            conn.execute(
                "INSERT INTO ingest_row_digest (store, tbl, key, digest, parked, stream, key_json) "
                "SELECT 'billing_prod', 'invoices', 'in_' || i, '\\x00', i % 5000 = 0, 'acc_' || (i / 10), "
                "json_build_object('invoice_id', 'in_' || i)::text FROM generate_series(1, 50000) i")
            conn.execute("INSERT INTO parked_record (source, tbl, key, reason, record, position) "
                         "SELECT 'billing_prod', 'invoices', key, 'a broken row', "
                         "json_build_object('account_id', stream), 'p' FROM ingest_row_digest WHERE parked")
            conn.execute("ANALYZE ingest_row_digest")
        before = digests_read(es)
        found = parked_rows(es, AccountRange())
        assert sorted(found) == sorted(f"acc_{i * 500}" for i in range(1, 11))
        assert digests_read(es) - before < 50_000
