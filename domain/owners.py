"""Who writes each compared legacy table and column: the ownership map (cli.md, "Where drift comes from"). Pure.

The default is legacy-stores.md's "written today by", as data:

    cf_prod.accounts            A1                  subs.subs_account      A1, but bad_debt and delinquent A3
    cf_prod.entitlements        Entitlements API    subs.subs_dunning      A3
    billing_prod.invoices       A2                  subs.subs_subscription subs-api
    billing_prod.dunning        A3                  subs.subs_invoice      subs-api
    subs.subs_customer          by the row's `source`: setup A1, checkout A2

`[owners]` in RECOMPUTE_CONFIG overrides it, keyed "store.table" or "store.table.column" (a name
each); a column's entry wins over its table's, and a table's entry (even subs_customer's) names
one owner for every row. `owners_from(raw)` checks the overrides: an unknown table or column, or an
empty name, raises `OwnersError` saying what and where.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from domain.legacy_tables import BY_NAME, CORRECTION_ORDER, correctable

BY_SOURCE = "subs.subs_customer"  # the one table whose owner is the row's `source`
SOURCE_OWNERS: Mapping[str, str] = {"setup": "A1", "checkout": "A2"}
INSERTED_SOURCE = "setup"  # what the projector writes in a new subs_customer row (domain/diff.py)

DEFAULT_OWNERS: Mapping[str, str] = {
    "cf_prod.accounts": "A1",
    "cf_prod.entitlements": "Entitlements API",
    "billing_prod.invoices": "A2",
    "billing_prod.dunning": "A3",
    "subs.subs_account": "A1",
    "subs.subs_account.bad_debt": "A3",
    "subs.subs_account.delinquent": "A3",
    "subs.subs_dunning": "A3",
    "subs.subs_subscription": "subs-api",
    "subs.subs_invoice": "subs-api",
}


class OwnersError(ValueError):
    """An `[owners]` entry names no compared table or column, or no owner."""


@dataclass(frozen=True)
class Owners:
    """The ownership map: the defaults with the configured overrides merged over them."""

    names: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_OWNERS))

    def owner(self, table: str, column: str | None, row: Mapping[str, Any] | None = None) -> str:
        """Who writes `column` (None: the row as a whole) of `table` ("store.table"); `row` is
        the legacy row concerned (subs_customer's owner is its `source`; a row to insert: setup's)."""
        if column is not None and f"{table}.{column}" in self.names:
            return self.names[f"{table}.{column}"]
        if table in self.names:
            return self.names[table]
        if table == BY_SOURCE:
            source = (row or {}).get("source") or INSERTED_SOURCE
            return SOURCE_OWNERS.get(str(source), str(source))
        raise KeyError(f"no owner for {table}")  # pragma: no cover - every compared table has one

    @property
    def all_names(self) -> tuple[str, ...]:
        """Every owner the map can name (for the report's rows)."""
        return tuple(sorted({*self.names.values(), *SOURCE_OWNERS.values()}))


NO_OVERRIDES = Owners()  # the defaults alone (no `[owners]` configured): the default of every `owners=`


def owners_from(raw: Mapping[str, Any], where: str = "[owners]") -> Owners:
    """The defaults with `raw` (the `[owners]` table as read) merged over them; `where` names the
    file for the error message."""
    merged = dict(DEFAULT_OWNERS)
    for key, name in raw.items():
        _check_key(key, where)
        if not isinstance(name, str) or not name.strip():
            raise OwnersError(f"{where} {key!r}: the owner must be a non-empty name, got {name!r}")
        merged[key] = name.strip()
    return Owners(merged)


def _check_key(key: str, where: str) -> None:
    store, _, rest = key.partition(".")
    table, _, column = rest.partition(".")
    name = f"{store}.{table}"
    if name not in CORRECTION_ORDER:
        known = ", ".join(CORRECTION_ORDER)
        raise OwnersError(f"{where} {key!r}: unknown table {name!r} (one of {known})")
    if column:
        columns = correctable(BY_NAME[name]).compared
        if column not in columns:
            raise OwnersError(f"{where} {key!r}: unknown column {column!r} of {name} "
                              f"(one of {', '.join(columns)})")
