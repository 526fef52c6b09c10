"""The only code that writes the legacy stores: compare-and-set statements, built from WRITABLE.

    statement(c, sets) -> (Composed, params)   the CAS statement of one correction
    probe(c) -> (Composed, params)             does the row already hold what `c` writes? (recovery)

`SPECS` knows, per table, its key, the SQL type of each column rules-v1 §3 lets the projector
write (exactly `WRITABLE`, checked at import), the bookkeeping columns §3 has it set with them
(`dunning.stage_since`, `entitlements.source`, `updated_at` where the table has one) and the
identity columns a new row carries. A correction naming anything else raises `WriteRefused` before
any SQL exists: a write elsewhere cannot be expressed.

    UPDATE t SET col = to, [bookkeeping,] updated_at = now()
      WHERE key AND account_id = a AND col IS NOT DISTINCT FROM from      -- 0 rows: stale
    INSERT ... ON CONFLICT DO NOTHING                                      -- 0 rows: stale
      (subs_customer, without a unique key: ... WHERE NOT EXISTS a row of the account)
    DELETE FROM subs_customer t WHERE id = k AND to_jsonb(t) = from       -- only the row as seen

Connections that run these must use TimeZone=UTC, so to_jsonb renders timestamps as the plan saw them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from domain.diff import WRITABLE, Correction


class WriteRefused(ValueError):
    """A correction asks for a write rules-v1 §3 does not allow; nothing was written."""


@dataclass(frozen=True)
class TableSpec:
    name: str
    key: dict[str, str]  # key column -> SQL type
    writable: dict[str, str]  # exactly WRITABLE[table], with SQL types
    bookkeeping: dict[str, str] = field(default_factory=dict)  # set with a write (rules-v1 §3)
    identity: dict[str, str] = field(default_factory=dict)  # a new row's other columns
    stamp: str | None = "updated_at"  # set to now() by every update (subs_customer has no such column)
    new_row_stamp: str = "updated_at"  # set to now() in an inserted row
    insert: bool = False
    delete: bool = False
    only: str | None = None  # rows an update may touch at all (SQL condition)


_ACCOUNT = {"account_id": "text"}
SPECS: dict[str, TableSpec] = {
    "billing_prod.invoices": TableSpec("invoices", {"invoice_id": "text"},
                                       {"status": "text", "amount_paid": "bigint"}),
    "subs.subs_invoice": TableSpec("subs_invoice", {"stripe_invoice_id": "text"},
                                   {"status": "text", "amount_remaining": "bigint", "attempt_count": "integer"},
                                   identity=_ACCOUNT, insert=True),
    "billing_prod.dunning": TableSpec("dunning", _ACCOUNT, {"stage": "text"},
                                      bookkeeping={"stage_since": "timestamptz"}, insert=True),
    "subs.subs_dunning": TableSpec("subs_dunning", _ACCOUNT, {"stage": "text", "attempt_count": "integer",
                                                              "next_action_at": "timestamptz"}, insert=True),
    "subs.subs_account": TableSpec("subs_account", _ACCOUNT, {"bad_debt": "boolean", "delinquent": "boolean"}),
    "subs.subs_subscription": TableSpec("subs_subscription", _ACCOUNT, {
        "status": "text", "stripe_subscription_id": "text", "current_period_end": "timestamptz"}, insert=True),
    "subs.subs_customer": TableSpec("subs_customer", {"id": "bigint"}, {"stripe_customer_id": "text"},
                                    identity={**_ACCOUNT, "source": "text"}, stamp=None, new_row_stamp="created_at",
                                    insert=True, delete=True),
    "cf_prod.accounts": TableSpec("accounts", _ACCOUNT, {"status": "text"}),
    "cf_prod.entitlements": TableSpec("entitlements", {**_ACCOUNT, "feature": "text"}, {"enabled": "boolean"},
                                      bookkeeping={"source": "text"}, insert=True,
                                      only="source IS DISTINCT FROM 'manual'"),  # manual rows are never ours
}
if {table: frozenset(spec.writable) for table, spec in SPECS.items()} != WRITABLE:  # pragma: no cover
    raise ImportError("legacy_writer.SPECS must name exactly the columns of domain.diff.WRITABLE")


def spec_of(c: Correction) -> TableSpec:
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
    spec = spec_of(c)
    if unknown := sorted(set(sets) - set(spec.bookkeeping)):
        raise WriteRefused(f"{c.table}: {', '.join(unknown)} is not set by the projector")
    params: dict[str, Any] = {"account": c.account_id}
    if c.op == "update":
        column_type = spec.writable[c.column]  # type: ignore[index]
        assignments = [_assign(c.column, "to", column_type)]  # type: ignore[arg-type]
        params.update(to=c.to, **{"from": c.from_})
        for name in sorted(sets):
            assignments.append(_assign(name, f"set_{name}", spec.bookkeeping[name]))
            params[f"set_{name}"] = sets[name]
        if spec.stamp:
            assignments.append(sql.SQL("{} = now()").format(sql.Identifier(spec.stamp)))
        where = [*_key_match(spec, c, params), _matches(c.column, "from", column_type)]  # type: ignore[arg-type]
        if spec.only:
            where.append(sql.SQL(spec.only))
        return sql.SQL("UPDATE {} SET {} WHERE {}").format(
            sql.Identifier(spec.name), sql.SQL(", ").join(assignments), sql.SQL(" AND ").join(where)), params
    if c.op == "insert":
        types = {**spec.key, **spec.writable, **spec.bookkeeping, **spec.identity}
        columns = sorted(c.to)
        values = [sql.SQL("{}::{}").format(sql.Placeholder(f"v_{col}"), sql.SQL(types[col])) for col in columns]
        params.update({f"v_{col}": c.to[col] for col in columns})
        guard = sql.SQL("")
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


def _assign(column: str, param: str, sql_type: str) -> sql.Composed:
    return sql.SQL("{} = {}::{}").format(sql.Identifier(column), sql.Placeholder(param), sql.SQL(sql_type))


def _matches(column: str, param: str, sql_type: str) -> sql.Composed:
    return sql.SQL("{} IS NOT DISTINCT FROM {}::{}").format(
        sql.Identifier(column), sql.Placeholder(param), sql.SQL(sql_type))


def _key_match(spec: TableSpec, c: Correction, params: dict[str, Any]) -> list[sql.Composable]:
    where: list[sql.Composable] = []
    for column, sql_type in spec.key.items():
        params[f"k_{column}"] = c.key[column]  # type: ignore[index]
        where.append(sql.SQL("{} = {}::{}").format(sql.Identifier(column), sql.Placeholder(f"k_{column}"),
                                                   sql.SQL(sql_type)))
    if "account_id" not in spec.key:
        where.append(sql.SQL("account_id = %(account)s"))
    return where
