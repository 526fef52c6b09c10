"""`one_row(cursor.fetchone())`: the row of a statement that always returns exactly one (an aggregate
without GROUP BY, `SELECT pg_try_advisory_lock(...)`, `SELECT EXISTS (...)`), typed as present.

psycopg types `fetchone()` as `Row | None`; for these statements None cannot come, and if it did it
would be a bug: it raises rather than reads on as if nothing were there.
"""

from __future__ import annotations

from typing import TypeVar

Row = TypeVar("Row")


def one_row(row: Row | None) -> Row:
    if row is None:
        raise LookupError("a statement that always returns one row returned none")
    return row
