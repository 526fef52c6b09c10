"""The row checks of ingestion, as functions over the catalogue of legacy tables (domain/legacy_tables.py).

Pure: `check_row` takes a row as PostgreSQL's `row_to_json` gives it (timestamps are ISO strings,
or 'infinity' which Python cannot hold) and returns why it cannot be recorded, or None.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from domain.events import CATALOG_STREAM
from domain.legacy_tables import TABLES, LegacyTable

_CURRENCY = re.compile(r"^[a-z]{3}$")


def _is_instant(value: Any) -> bool:
    try:
        return isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def key_of(spec: LegacyTable, row: dict[str, Any]) -> dict[str, Any]:
    return {column: row.get(column) for column in spec.key}


def key_text(spec: LegacyTable, row: dict[str, Any]) -> str:
    if len(spec.key) == 1:
        return str(row.get(spec.key[0]))
    return "\x1f".join(str(row.get(column)) for column in spec.key)


def stream_of(spec: LegacyTable, row: dict[str, Any]) -> str | None:
    if spec.account is None:
        return CATALOG_STREAM
    account = row.get(spec.account)
    return account.strip() if isinstance(account, str) and account.strip() else None


# What a column's JSON value (row_to_json) must be, by pg_type.typname: (its Python class, "not ...").
_JSON_TYPES: dict[str, tuple[type, str]] = {
    "text": (str, "a string"), "bpchar": (str, "a string"), "timestamptz": (str, "a timestamp"),
    "bool": (bool, "a boolean"), "int4": (int, "an integer"), "int8": (int, "an integer"),
}


_CHECKS: dict[str, tuple[tuple[str, bool, type, str], ...]] = {
    spec.name: tuple((name, column.not_null, *_JSON_TYPES[column.type]) for name, column in spec.columns.items())
    for spec in TABLES
}


def check_row(spec: LegacyTable, row: dict[str, Any]) -> str | None:
    """Why this row cannot be recorded, or None when it can: the first column (in the catalogue's
    order, keys and account first) that is missing, NULL where legacy-stores.md has NOT NULL, of
    another JSON type than its column's, or a value the catalogue does not allow."""
    for column in spec.key:
        value = row.get(column)
        if value is None or (value.__class__ is str and not value.strip()):
            return f"missing key: {column} is empty"
    if spec.account is not None:
        account = row.get(spec.account)
        if account.__class__ is not str or not account.strip():
            return f"belongs to no account: {spec.account} is empty"
    for name, not_null, json_type, expected in _CHECKS[spec.name]:
        if name not in row:
            return f"{name}: no such column"
        value = row[name]
        if value is None:
            if not_null:
                return f"{name}: null (NOT NULL in legacy-stores.md)"
        elif value.__class__ is not json_type:  # exactly: a bool is not an integer, a float never is
            return f"{name}: not {expected}: {value!r}"
    for column, allowed in spec.statuses.items():
        if row.get(column) not in allowed:
            return f"unknown {column} {row.get(column)!r} (expected one of {', '.join(sorted(allowed))})"
    for column in spec.money:
        value = row.get(column)
        if not isinstance(value, int) or value < 0:
            return f"negative money: {column} = {value!r}"
    for column in spec.counts:
        value = row.get(column)
        if not isinstance(value, int) or value < 0:
            return f"negative count: {column} = {value!r}"
    for column in spec.columns_with_time:
        value = row.get(column)
        if value is None:
            if column in spec.required_times:
                return f"bad timestamp: {column} is missing"
            continue
        if not _is_instant(value):
            return f"bad timestamp: {column} = {value!r}"
    if spec.table == "invoices":
        if not _CURRENCY.match(str(row.get("currency") or "")):
            return f"bad currency {row.get('currency')!r} (expected lower-case ISO 4217)"
    return None


def source_time(spec: LegacyTable, row: dict[str, Any] | None, *, known: bool, read_at: datetime) -> str:
    """When the change happened at the source (rules-v1 "Time"), as an ISO string.

    A row's `updated_at`; a new row of a table without one, its `created_at`; the catalog, since
    always. A change or deletion the row itself does not date happened at or before the read.
    """
    if row is None:
        return read_at.isoformat()
    if spec.updated is not None and isinstance(row.get(spec.updated), str):
        return row[spec.updated]
    if not known and spec.created is not None and isinstance(row.get(spec.created), str):
        return row[spec.created]
    if spec.account is None:
        return SINCE_ALWAYS
    return read_at.isoformat()


SINCE_ALWAYS = "1970-01-01T00:00:00+00:00"
