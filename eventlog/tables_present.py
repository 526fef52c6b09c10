"""Whether tables exist yet in the event store: the commands that write nothing must read a fresh
(or older) store without creating anything, so every reader asks this one question the same way."""

from __future__ import annotations

import psycopg
from psycopg.rows import tuple_row


def has_tables(conn: psycopg.Connection, *names: str) -> bool:
    """True when every one of `names` exists (on the connection's search path), in one round trip."""
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute("SELECT bool_and(to_regclass(name) IS NOT NULL) FROM unnest(%s::text[]) name",
                          (list(names),)).fetchone()
    return bool(row and row[0])
