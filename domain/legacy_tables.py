"""The one catalogue of the legacy stores and their tables (legacy-stores.md, rules-v1 §3). Pure data.

Per table: its store and name, key, the column naming the account, the time columns, the values the
row checks allow (ingestion/legacy/tables.py), and, for the tables rules-v1 §3 compares, a
`Correctable`: the compared columns (the only ones the projector ever writes), the bookkeeping
columns it sets with them, the identity columns a new row carries and what it may insert or delete
(projections/apply/cas_sql.py). `sql_types` gives the SQL type of every column the writer names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

LegacyStore = Literal["cf_prod", "billing_prod", "subs"]
STORES: tuple[LegacyStore, ...] = get_args(LegacyStore)

INVOICE_STATUSES = frozenset({"draft", "open", "paid", "void", "uncollectible"})
DUNNING_STAGES = frozenset({"none", "grace", "retrying", "final_notice", "suspended"})
SUBSCRIPTION_STATUSES = frozenset({
    "incomplete", "incomplete_expired", "trialing", "active", "past_due", "unpaid", "canceled", "paused",
})


@dataclass(frozen=True)
class Correctable:
    """What rules-v1 §3 has the projector compare in a table's rows, and how it may write them."""

    compared: tuple[str, ...]  # the columns that must equal the true value: the only ones ever written
    bookkeeping: tuple[str, ...] = ()  # set with a write, never compared (stage_since, source)
    identity: tuple[str, ...] = ()  # a new row's other columns
    stamp: str | None = "updated_at"  # set to now() by every update (subs_customer has no such column)
    new_row_stamp: str = "updated_at"  # set to now() in an inserted row
    insert: bool = False
    delete: bool = False
    only: str | None = None  # rows an update may touch at all (SQL condition)
    key_assigned: bool = False  # the database assigns a new row's key (bigserial): an insert names none


@dataclass(frozen=True)
class LegacyTable:
    store: LegacyStore
    table: str
    key: tuple[str, ...]
    account: str | None  # column naming the account; None: the row belongs to the catalog stream
    updated: str | None = None  # the column that moves on every change
    created: str | None = None
    statuses: Mapping[str, frozenset[str]] = field(default_factory=dict)  # column -> allowed values
    money: tuple[str, ...] = ()  # minor units, must be >= 0
    counts: tuple[str, ...] = ()  # must be >= 0
    required_times: tuple[str, ...] = ()
    optional_times: tuple[str, ...] = ()
    correctable: Correctable | None = None  # None: never compared, never written
    sql_types: Mapping[str, str] = field(default_factory=dict)  # the columns the writer names -> SQL type

    @property
    def name(self) -> str:
        return f"{self.store}.{self.table}"

    @property
    def columns_with_time(self) -> tuple[str, ...]:
        return self.required_times + self.optional_times

    @property
    def columns_named(self) -> frozenset[str]:
        """Every column this entry names: a table without one of them is not the table legacy-stores.md describes."""
        named = (*self.key, self.account, self.updated, self.created, *self.statuses, *self.money, *self.counts,
                 *self.columns_with_time)
        return frozenset(column for column in named if column is not None)


_ACCOUNT = {"account_id": "text"}

TABLES: tuple[LegacyTable, ...] = (
    LegacyTable("cf_prod", "accounts", ("account_id",), "account_id", "updated_at", "created_at",
                statuses={"status": frozenset({"active", "suspended", "closed"})},
                required_times=("created_at", "updated_at"),
                correctable=Correctable(("status",)), sql_types={**_ACCOUNT, "status": "text"}),
    LegacyTable("cf_prod", "product_config", ("plan", "feature"), None),
    LegacyTable("cf_prod", "entitlements", ("account_id", "feature"), "account_id", "updated_at",
                statuses={"source": frozenset({"plan", "manual", "dunning"})}, required_times=("updated_at",),
                correctable=Correctable(("enabled",), bookkeeping=("source",), insert=True,
                                        only="source IS DISTINCT FROM 'manual'"),  # manual rows are never ours
                sql_types={**_ACCOUNT, "feature": "text", "enabled": "boolean", "source": "text"}),
    LegacyTable("billing_prod", "invoices", ("invoice_id",), "account_id", "updated_at", "created_at",
                statuses={"status": INVOICE_STATUSES}, money=("amount_due", "amount_paid"),
                required_times=("created_at", "updated_at"), optional_times=("due_at",),
                correctable=Correctable(("status", "amount_paid")),
                sql_types={"invoice_id": "text", "status": "text", "amount_paid": "bigint"}),
    LegacyTable("billing_prod", "charges", ("charge_id",), "account_id", None, "created_at",
                statuses={"status": frozenset({"pending", "succeeded", "failed", "refunded"})}, money=("amount",),
                required_times=("created_at",)),
    LegacyTable("billing_prod", "dunning", ("account_id",), "account_id", "updated_at",
                statuses={"stage": DUNNING_STAGES}, required_times=("updated_at",), optional_times=("stage_since",),
                correctable=Correctable(("stage",), bookkeeping=("stage_since",), insert=True),
                sql_types={**_ACCOUNT, "stage": "text", "stage_since": "timestamptz"}),
    LegacyTable("billing_prod", "schedules", ("invoice_id", "attempt"), "account_id",
                statuses={"status": frozenset({"pending", "done", "cancelled"})}, counts=("attempt",),
                required_times=("scheduled_at",)),
    LegacyTable("subs", "subs_account", ("account_id",), "account_id", "updated_at",
                required_times=("updated_at",),
                correctable=Correctable(("bad_debt", "delinquent")),
                sql_types={**_ACCOUNT, "bad_debt": "boolean", "delinquent": "boolean"}),
    LegacyTable("subs", "subs_customer", ("id",), "account_id", None, "created_at",
                required_times=("created_at",),
                correctable=Correctable(("stripe_customer_id",), identity=("account_id", "source"), stamp=None,
                                        new_row_stamp="created_at", insert=True, delete=True, key_assigned=True),
                sql_types={**_ACCOUNT, "id": "bigint", "stripe_customer_id": "text", "source": "text"}),
    LegacyTable("subs", "subs_dunning", ("account_id",), "account_id", "updated_at",
                statuses={"stage": DUNNING_STAGES}, counts=("attempt_count",),
                required_times=("updated_at",), optional_times=("next_action_at",),
                correctable=Correctable(("stage", "attempt_count", "next_action_at"), insert=True),
                sql_types={**_ACCOUNT, "stage": "text", "attempt_count": "integer",
                           "next_action_at": "timestamptz"}),
    LegacyTable("subs", "subs_subscription", ("account_id",), "account_id", "updated_at",
                statuses={"status": SUBSCRIPTION_STATUSES}, required_times=("updated_at",),
                optional_times=("current_period_end",),
                correctable=Correctable(("status", "stripe_subscription_id", "current_period_end"), insert=True),
                sql_types={**_ACCOUNT, "status": "text", "stripe_subscription_id": "text",
                           "current_period_end": "timestamptz"}),
    LegacyTable("subs", "subs_invoice", ("stripe_invoice_id",), "account_id", "updated_at",
                statuses={"status": INVOICE_STATUSES}, money=("amount_remaining",), counts=("attempt_count",),
                required_times=("updated_at",),
                correctable=Correctable(("status", "amount_remaining", "attempt_count"), identity=("account_id",),
                                        insert=True),
                sql_types={**_ACCOUNT, "stripe_invoice_id": "text", "status": "text", "amount_remaining": "bigint",
                           "attempt_count": "integer"}),
)
BY_NAME: dict[str, LegacyTable] = {spec.name: spec for spec in TABLES}
TABLES_BY_STORE: dict[str, tuple[LegacyTable, ...]] = {
    store: tuple(spec for spec in TABLES if spec.store == store) for store in STORES
}

# The tables rules-v1 §3 compares, in the order a plan lists their corrections (cli.md output order).
CORRECTION_ORDER: tuple[str, ...] = (
    "billing_prod.invoices", "subs.subs_invoice", "billing_prod.dunning", "subs.subs_dunning", "subs.subs_account",
    "subs.subs_subscription", "subs.subs_customer", "cf_prod.accounts", "cf_prod.entitlements",
)
COMPARED: tuple[LegacyTable, ...] = tuple(spec for spec in TABLES if spec.correctable is not None)
COMPARED_BY_STORE: dict[str, tuple[str, ...]] = {
    store: tuple(spec.table for spec in COMPARED if spec.store == store) for store in STORES
}


def correctable(spec: LegacyTable) -> Correctable:
    if spec.correctable is None:
        raise ValueError(f"{spec.name}: not a table rules-v1 §3 compares")
    return spec.correctable


def _check() -> None:
    """The catalogue agrees with itself; a mistake here fails at import, before anything reads a store."""
    if sorted(CORRECTION_ORDER) != sorted(spec.name for spec in COMPARED):  # pragma: no cover
        raise ImportError("legacy_tables.CORRECTION_ORDER must name exactly the compared tables")
    for spec in COMPARED:
        c = correctable(spec)
        if missing := {*spec.key, *c.compared, *c.bookkeeping, *c.identity} - set(spec.sql_types):  # pragma: no cover
            raise ImportError(f"legacy_tables: {spec.name} has no SQL type for {', '.join(sorted(missing))}")


_check()
