"""Many rows into one of our tables at COPY speed, with ON CONFLICT semantics COPY lacks.

    bulk_insert(cur, "stripe_event_seen", ("event_id", "digest", "created"), rows)
    bulk_insert(cur, "ingest_row_digest", columns, rows,
                on_conflict="(store, tbl, key) DO UPDATE SET digest = EXCLUDED.digest, ...")

The rows are COPYed into a temporary twin of the table (emptied first; gone at commit), then moved
by one INSERT ... SELECT ... ON CONFLICT. `executemany` of the same rows spent ~3 s of an 11 s
Stripe catch-up in psycopg's pipeline bookkeeping.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql


def bulk_insert(cur: psycopg.Cursor, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]],
                *, on_conflict: str = "DO NOTHING") -> None:
    target, twin = sql.Identifier(table), sql.Identifier(f"bulk_{table}")
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    cur.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
                .format(twin, target))
    cur.execute(sql.SQL("TRUNCATE {}").format(twin))
    with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(twin, names)) as copy:
        for row in rows:
            copy.write_row(row)
    cur.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT " + on_conflict)
                .format(target, names, names, twin))
