"""Whether tables exist yet in the event store: the commands that write nothing must read a fresh
(or older) store without creating anything, so every reader asks this one question the same way."""

from __future__ import annotations

import re

import psycopg
from psycopg.rows import tuple_row


def has_tables(conn: psycopg.Connection, *names: str) -> bool:
    """True when every one of `names` exists (on the connection's search path), in one round trip."""
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute("SELECT bool_and(to_regclass(name) IS NOT NULL) FROM unnest(%b::text[]) name",
                          (list(names),)).fetchone()
    return bool(row and row[0])


def has_columns(conn: psycopg.Connection, table: str, *columns: str) -> bool:
    """True when `table` (in the current schema) has every one of `columns` that this session can
    see (information_schema: a column it holds no privilege on is not there), in one round trip. A
    table made before a column was added gains it at the next writing command's DDL; until then its
    readers leave it be."""
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute("SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() "
                          "AND table_name = %s AND column_name = ANY(%s)", (table, list(columns))).fetchone()
    return bool(row and row[0] == len(set(columns)))


def may_write(conn: psycopg.Connection, table: str, *privileges: str) -> bool:
    """This session may write `table`: not a standby, not a read-only default, and granted each of
    `privileges` (e.g. "INSERT", "UPDATE")."""
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(
            "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off' "
            "AND (SELECT bool_and(has_table_privilege(%s, p)) FROM unnest(%b::text[]) p)",
            (table, list(privileges))).fetchone()
    return bool(row and row[0])


_MADE = re.compile(r"CREATE\s+(?:UNIQUE\s+)?(?:TABLE|INDEX)\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.IGNORECASE)
_ALTER = re.compile(r"ALTER\s+TABLE\s+(\w+)((?:\s*,?\s*ADD\s+COLUMN\s+IF\s+NOT\s+EXISTS\s+\w+[^,;]*)+)",
                    re.IGNORECASE)
_ADDED = re.compile(r"ADD\s+COLUMN\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.IGNORECASE)


def ddl_objects(ddl: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Pure: the tables and indexes `ddl` creates (IF NOT EXISTS) and the (table, column) pairs it adds."""
    text = re.sub(r"--[^\n]*", "", ddl)
    columns = [(table, column) for table, adds in _ALTER.findall(text) for column in _ADDED.findall(adds)]
    return _MADE.findall(text), columns


def ddl_done(conn: psycopg.Connection, ddl: str) -> bool:
    """Everything `ddl` makes exists already, so running it would change nothing, but would lock:
    CREATE INDEX IF NOT EXISTS and ALTER TABLE … ADD COLUMN IF NOT EXISTS lock their table even with
    nothing to do, against the steps of followers already running (a deadlock, issue 17)."""
    relations, columns = ddl_objects(ddl)
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(
            "SELECT (SELECT bool_and(to_regclass(name) IS NOT NULL) FROM unnest(%b::text[]) name) "
            "AND (SELECT count(*) FROM unnest(%b::text[], %b::text[]) c(tbl, col) JOIN pg_attribute a "
            "     ON a.attrelid = to_regclass(c.tbl) AND a.attname = c.col AND NOT a.attisdropped) = %s",
            (relations, [t for t, _ in columns], [c for _, c in columns], len(columns))).fetchone()
    return bool(row and row[0])
