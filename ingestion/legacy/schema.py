"""Is each legacy table still the table recompute reads? Checked where it is read (issue 18).

    store_problems(conn, store) -> {"store.table": why}    the live schema of one store's tables
    relation_problems(spec, relation, types) -> why | None  a change stream's Relation message
    blocked_tables(stores) -> {"store.table": why}           what plan, apply and the followers withhold
    unblocked_stores(blocked) -> {store}                    the stores with no table blocked

Every column recompute keys, times, compares, reads or writes must be there with the type it reads
exactly (domain/legacy_tables.py: `columns`, `schema_problems`). A table that is not is *blocked*:
its rows are not decoded into facts (snapshot ingest skips it, a change stream skips its changes),
and no correction of it (nor, when the truth reads it, of any account) is planned or written. The
readers record a block in `legacy_table_blocked` (eventlog/own_tables.py) and lift it once the table
matches again and has been read again whole; `blocked_tables` adds the live schema of every store,
so a plan never writes from a column that is no longer there even before an ingest has seen it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import psycopg

from domain.legacy_tables import TABLES_BY_STORE, LegacyTable, schema_problems
from eventlog.own_tables import recorded_blocks
from eventlog.stores import Stores

if TYPE_CHECKING:  # only the change streams pass one: the other readers need not import the decoder
    from ingestion.legacy.cdc.pgoutput import Relation

log = logging.getLogger("recompute.schema")

# pg_type oids of the built-in types (pgoutput names a column's type by oid; others come in Type messages)
BUILTIN_TYPES = {16: "bool", 20: "int8", 21: "int2", 23: "int4", 25: "text", 114: "json", 700: "float4",
                 701: "float8", 1042: "bpchar", 1043: "varchar", 1082: "date", 1114: "timestamp",
                 1184: "timestamptz", 1700: "numeric", 3802: "jsonb"}


def table_columns(conn: psycopg.Connection, tables: list[str]) -> dict[str, dict[str, str]]:
    """Each table's columns (on the search path) with their pg_type.typname."""
    found: dict[str, dict[str, str]] = {}
    for table, column, typname in conn.execute(
            "SELECT table_name, column_name, udt_name FROM information_schema.columns "
            "WHERE table_schema = ANY(current_schemas(false)) AND table_name = ANY(%s)", (tables,)):
        found.setdefault(table, {})[column] = typname
    return found


def problems_of(spec: LegacyTable, columns: Mapping[str, str] | None) -> str | None:
    """Why the table (its columns; None: no such table) is blocked, in one line; None: it is not."""
    if columns is None:
        return "no such table"
    problems = schema_problems(spec, columns)
    return "; ".join(problems) if problems else None


def store_problems(conn: psycopg.Connection, store: str) -> dict[str, str]:
    specs = TABLES_BY_STORE[store]
    found = table_columns(conn, [spec.table for spec in specs])
    return {spec.name: why for spec in specs if (why := problems_of(spec, found.get(spec.table))) is not None}


def relation_problems(spec: LegacyTable, relation: Relation, types: Mapping[int, str]) -> str | None:
    """The same check on a pgoutput Relation message (`types`: oids its Type messages named)."""
    return problems_of(spec, {c.name: BUILTIN_TYPES.get(c.type_oid) or types.get(c.type_oid) or f"oid {c.type_oid}"
                              for c in relation.columns})


def blocked_tables(stores: Stores, live: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, str]:
    """Every table blocked now: by its live schema, or recorded by a reader and not yet lifted.
    `live`: the `store_problems` of stores the caller has just read (bootstrap does, for a command
    that reads the legacy stores): those stores' columns are not read again."""
    blocked: dict[str, str] = {}
    with stores.connect(purpose="schema") as conn:
        blocked.update(recorded_blocks(conn))
    for store in TABLES_BY_STORE:
        if live is not None and store in live:
            blocked.update(live[store])
            continue
        with stores.connect(store, purpose="schema") as conn:
            blocked.update(store_problems(conn, store))
    return blocked


def unblocked_stores(blocked: Mapping[str, str]) -> frozenset[str]:
    """The stores none of whose tables is in `blocked` (so each has the columns read, its account
    column too: projections/legacy_rows.StoreSnapshot need not look them up again)."""
    return frozenset(store for store in TABLES_BY_STORE if not any(table.startswith(f"{store}.") for table in blocked))


def describe(blocked: Mapping[str, str]) -> list[str]:
    """One line per blocked table, as the logs, `plan`, `status` and `cdc status` say it."""
    return [f"{table} blocked: {why}" for table, why in sorted(blocked.items())]
