"""What PostgreSQL's statistics say a database's tables were read, for tests of how much a read reads."""

from __future__ import annotations

import time

import psycopg


def table_reads(dsn: str, tables: tuple[str, ...]) -> dict[str, tuple[int, int, int]]:
    """Each table's (rows read by sequential scans, rows fetched through indexes, live rows) so far,
    once every other session of the database has ended (a backend flushes its statistics before it
    leaves pg_stat_activity)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(100):
            if not conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                "AND pid <> pg_backend_pid()").fetchone()[0]:
                break
            time.sleep(0.05)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return {table: (seq, fetched, live) for table, seq, fetched, live in conn.execute(
            "SELECT relname, coalesce(seq_tup_read, 0), coalesce(idx_tup_fetch, 0), n_live_tup "
            "FROM pg_stat_user_tables WHERE relname = ANY(%s)", (list(tables),))}
