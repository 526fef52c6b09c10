"""The only code that writes the legacy stores: compare-and-set statements, built from domain/legacy_tables.py.

    statement(c, sets) -> (Composed, params)   the CAS statement of one correction
    probe(c) -> (Composed, params)             does the row already hold what `c` writes? (recovery)

`SPECS` is the catalogue's view for the writer: per compared table, its key, the SQL type of each
column rules-v1 §3 lets the projector write (exactly `WRITABLE`), the bookkeeping columns §3 has
it set with them (`dunning.stage_since`, `entitlements.source`, `updated_at` where the table has
one) and the identity columns a new row carries. A correction naming anything else raises `WriteRefused` before
any SQL exists: a write elsewhere cannot be expressed.

    UPDATE t SET col = to, [bookkeeping,] updated_at = now()
      WHERE key AND account_id = a AND col IS NOT DISTINCT FROM from      -- 0 rows: stale
    INSERT ... ON CONFLICT DO NOTHING                                      -- 0 rows: stale
      (subs_customer, without a unique key: ... WHERE NOT EXISTS a row of the account)
    DELETE FROM subs_customer t WHERE id = k AND to_jsonb(t) = from       -- only the row as seen

Connections that run these must use TimeZone=UTC, so to_jsonb renders timestamps as the plan saw them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from domain.diff import WRITABLE, Correction
from domain.legacy_tables import BY_NAME, LegacyTable, correctable


class WriteRefused(ValueError):
    """A correction asks for a write rules-v1 §3 does not allow; nothing was written."""


@dataclass(frozen=True)
class WriteSpec:
    """One compared table of domain/legacy_tables.py as the writer uses it: each column with its SQL type."""

    name: str
    key: dict[str, str]  # key column -> SQL type
    writable: dict[str, str]  # exactly WRITABLE[table], with SQL types
    bookkeeping: dict[str, str]  # set with a write (rules-v1 §3)
    identity: dict[str, str]  # a new row's other columns
    stamp: str | None  # set to now() by every update (subs_customer has no such column)
    new_row_stamp: str  # set to now() in an inserted row
    insert: bool
    delete: bool
    only: str | None  # rows an update may touch at all (SQL condition)

    @classmethod
    def of(cls, table: LegacyTable) -> WriteSpec:
        c = correctable(table)

        def typed(columns: Iterable[str]) -> dict[str, str]:
            return {column: table.sql_types[column] for column in columns}

        return cls(table.table, typed(table.key), typed(c.compared), typed(c.bookkeeping), typed(c.identity),
                   c.stamp, c.new_row_stamp, c.insert, c.delete, c.only)


SPECS: dict[str, WriteSpec] = {table: WriteSpec.of(BY_NAME[table]) for table in WRITABLE}


def spec_of(c: Correction) -> WriteSpec:
    spec = SPECS.get(c.table)
    if spec is None:
        raise WriteRefused(f"{c.table}: not a table the projector writes")
    if c.op == "insert" and not spec.insert or c.op == "delete" and not spec.delete:
        raise WriteRefused(f"{c.table}: the projector does not {c.op} rows here")
    if c.key is not None and set(c.key) != set(spec.key) or c.key is None and c.table != "subs.subs_customer":
        raise WriteRefused(f"{c.table}: key {c.key!r} is not the table's key ({', '.join(spec.key)})")
    if (c.key or {}).get("account_id", c.account_id) != c.account_id:
        raise WriteRefused(f"{c.table}: key {c.key!r} is not a row of {c.account_id}")
    if c.op == "update" and c.column not in spec.writable:
        raise WriteRefused(f"{c.table}.{c.column}: not a column the projector writes")
    if c.op == "insert":
        allowed = {**spec.key, **spec.writable, **spec.bookkeeping, **spec.identity}
        if unknown := sorted(set(c.to) - set(allowed)):
            raise WriteRefused(f"{c.table}: an inserted row may not set {', '.join(unknown)}")
        if c.to.get("account_id") != c.account_id:
            raise WriteRefused(f"{c.table}: an inserted row must belong to {c.account_id}")
    return spec


def statement(c: Correction, sets: Mapping[str, Any]) -> tuple[sql.Composed, dict[str, Any]]:
    """An update's statement is one object per shape (table, column, bookkeeping set), built once:
    a writer renders each shape once per connection (write_store) and the server prepares it."""
    spec = spec_of(c)
    if unknown := sorted(set(sets) - set(spec.bookkeeping)):
        raise WriteRefused(f"{c.table}: {', '.join(unknown)} is not set by the projector")
    params: dict[str, Any] = {"account": c.account_id}
    if c.op == "update":
        params.update(to=c.to, **{"from": c.from_})
        params.update({f"set_{name}": sets[name] for name in sets})
        _key_params(spec, c, params)
        return _update(c.table, c.column or "", tuple(sorted(sets))), params
    if c.op == "insert":
        types = {**spec.key, **spec.writable, **spec.bookkeeping, **spec.identity}
        columns = sorted(c.to)
        values = [sql.SQL("{}::{}").format(sql.Placeholder(f"v_{col}"), sql.SQL(types[col])) for col in columns]
        params.update({f"v_{col}": c.to[col] for col in columns})
        guard: sql.Composable = sql.SQL("")
        if c.key is None:  # subs_customer has no unique key: insert only while the account has no row
            guard = sql.SQL(" WHERE NOT EXISTS (SELECT 1 FROM {} WHERE account_id = %(account)s)").format(
                sql.Identifier(spec.name))
        return sql.SQL("INSERT INTO {} ({}, {}) SELECT {}, now(){} ON CONFLICT DO NOTHING").format(
            sql.Identifier(spec.name), sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(spec.new_row_stamp),
            sql.SQL(", ").join(values), guard), params
    params["row"] = Jsonb(c.from_)
    return sql.SQL("DELETE FROM {} t WHERE {} AND to_jsonb(t) = %(row)s::jsonb").format(
        sql.Identifier(spec.name), sql.SQL(" AND ").join(_key_match(spec, c, params))), params


def probe(c: Correction) -> tuple[sql.Composed, dict[str, Any]]:
    """A query that returns a row exactly when the legacy store already holds what `c` writes."""
    spec = spec_of(c)
    params: dict[str, Any] = {"account": c.account_id}
    if c.op == "update":
        params["to"] = c.to
        where = [*_key_match(spec, c, params), _matches(c.column, "to", spec.writable[c.column])]  # type: ignore
    elif c.op == "insert":
        where = [*(_key_match(spec, c, params) if c.key else [sql.SQL("account_id = %(account)s")])]
        for col in sorted(set(c.to) & set(spec.writable)):
            params[f"v_{col}"] = c.to[col]
            where.append(_matches(col, f"v_{col}", spec.writable[col]))
    else:
        return sql.SQL("SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM {} WHERE {})").format(
            sql.Identifier(spec.name), sql.SQL(" AND ").join(_key_match(spec, c, params))), params
    return sql.SQL("SELECT 1 FROM {} WHERE {}").format(sql.Identifier(spec.name), sql.SQL(" AND ").join(where)), params


@functools.cache
def _update(table: str, column: str, sets: tuple[str, ...]) -> sql.Composed:
    spec = SPECS[table]
    column_type = spec.writable[column]
    assignments = [_assign(column, "to", column_type)]
    for name in sets:
        assignments.append(_assign(name, f"set_{name}", spec.bookkeeping[name]))
    if spec.stamp:
        assignments.append(sql.SQL("{} = now()").format(sql.Identifier(spec.stamp)))
    where = [*_key_sql(spec), _matches(column, "from", column_type)]
    if spec.only:
        where.append(sql.SQL(spec.only))
    return sql.SQL("UPDATE {} SET {} WHERE {}").format(
        sql.Identifier(spec.name), sql.SQL(", ").join(assignments), sql.SQL(" AND ").join(where))


def _assign(column: str, param: str, sql_type: str) -> sql.Composed:
    return sql.SQL("{} = {}::{}").format(sql.Identifier(column), sql.Placeholder(param), sql.SQL(sql_type))


def _matches(column: str, param: str, sql_type: str) -> sql.Composed:
    return sql.SQL("{} IS NOT DISTINCT FROM {}::{}").format(
        sql.Identifier(column), sql.Placeholder(param), sql.SQL(sql_type))


def _key_match(spec: WriteSpec, c: Correction, params: dict[str, Any]) -> list[sql.Composable]:
    _key_params(spec, c, params)
    return _key_sql(spec)


def _key_params(spec: WriteSpec, c: Correction, params: dict[str, Any]) -> None:
    for column in spec.key:
        params[f"k_{column}"] = c.key[column]  # type: ignore[index]


def _key_sql(spec: WriteSpec) -> list[sql.Composable]:
    where: list[sql.Composable] = [
        sql.SQL("{} = {}::{}").format(sql.Identifier(column), sql.Placeholder(f"k_{column}"), sql.SQL(sql_type))
        for column, sql_type in spec.key.items()]
    if "account_id" not in spec.key:
        where.append(sql.SQL("account_id = %(account)s"))
    return where
