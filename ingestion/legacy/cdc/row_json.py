"""A row from the change stream as the very JSON text `row_to_json` gives for it, so its digest
equals the digest snapshot ingestion records for the same row (ingest_row_digest): the stream,
the handoff and `ingest --resync` then agree on what "unchanged" means.

The values come in PostgreSQL's text output, with the replication session's `DateStyle = ISO`
and `TimeZone = UTC` (stream.py sets both). `row_to_json` writes, per type category: booleans as
true/false, numbers bare (NaN and infinities quoted), json/jsonb as they are, dates and
timestamps in ISO 8601 with a `T` (and `+00:00`), anything else as a JSON string escaped as
PostgreSQL's escape_json does. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from ingestion.legacy.cdc.pgoutput import Column, Unchanged, Value

BOOL, INT2, INT4, INT8, OID, FLOAT4, FLOAT8, NUMERIC = 16, 21, 23, 20, 26, 700, 701, 1700
JSON, JSONB, DATE, TIMESTAMP, TIMESTAMPTZ = 114, 3802, 1082, 1114, 1184
_NUMBERS = frozenset({INT2, INT4, INT8, OID, FLOAT4, FLOAT8, NUMERIC})
_NOT_FINITE = frozenset({"NaN", "Infinity", "-Infinity", "infinity", "-infinity"})


def json_value(type_oid: int, text: str | None) -> str:
    """One column's value as row_to_json writes it."""
    if text is None:
        return "null"
    if type_oid == BOOL:
        return "true" if text == "t" else "false"
    if type_oid in _NUMBERS:
        return _string(text) if text in _NOT_FINITE else text
    if type_oid in (JSON, JSONB):
        return text
    if type_oid == TIMESTAMPTZ:
        return _string(_iso_timestamptz(text))
    if type_oid == TIMESTAMP:
        return _string(text.replace(" ", "T", 1) if text[:1].isdigit() else text)
    return _string(text)


def _iso_timestamptz(text: str) -> str:
    """'2026-03-01 00:00:00.5+00' -> '2026-03-01T00:00:00.5+00:00' ('infinity' stays)."""
    if not text[:1].isdigit() or text.endswith(" BC"):
        return text
    stamp = text.replace(" ", "T", 1)
    sign = max(stamp.rfind("+"), stamp.rfind("-"))
    if sign > 10 and len(stamp) - sign == 3:  # an offset of whole hours: +00 -> +00:00
        stamp += ":00"
    return stamp


def _string(text: str) -> str:
    return orjson.dumps(text).decode()


def row_json(columns: Sequence[Column], values: Sequence[Value]) -> str:
    """The row as row_to_json text; every value must be known (no UNCHANGED left: carry them first)."""
    parts = []
    for column, value in zip(columns, values, strict=True):
        if isinstance(value, Unchanged):
            raise ValueError(f"column {column.name}: unchanged TOAST value not carried forward")
        parts.append(f"{_string(column.name)}:{json_value(column.type_oid, value)}")
    return "{" + ",".join(parts) + "}"


def text_of(type_oid: int, value: object) -> str | None:
    """The inverse for carrying a value forward: a value of a recorded row (JSON-decoded) back to
    the text the stream would have sent (only its JSON form matters: it goes through json_value again)."""
    if value is None:
        return None
    if type_oid == BOOL:
        return "t" if value else "f"
    if type_oid in (JSON, JSONB):
        return orjson.dumps(value).decode()
    if type_oid == TIMESTAMPTZ and isinstance(value, str):
        return value  # already ISO with T and offset: _iso_timestamptz leaves it as it is
    return str(value)
