"""What ingestion knows of each legacy table (legacy-stores.md): key, account, time, and validity.

Pure: `check_row` takes a row as PostgreSQL's `row_to_json` gives it (timestamps are ISO strings,
or 'infinity' which Python cannot hold) and returns why it cannot be recorded, or None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.events import CATALOG_STREAM

INVOICE_STATUSES = {"draft", "open", "paid", "void", "uncollectible"}
DUNNING_STAGES = {"none", "grace", "retrying", "final_notice", "suspended"}
SUBSCRIPTION_STATUSES = {
    "incomplete", "incomplete_expired", "trialing", "active", "past_due", "unpaid", "canceled", "paused",
}


@dataclass(frozen=True)
class TableSpec:
    store: str
    table: str
    key: tuple[str, ...]
    account: str | None  # column naming the account; None: the row belongs to the catalog stream
    updated: str | None = None  # the column that moves on every change
    created: str | None = None
    statuses: dict[str, set[str]] = field(default_factory=dict)  # column -> allowed values
    money: tuple[str, ...] = ()  # minor units, must be >= 0
    counts: tuple[str, ...] = ()  # must be >= 0
    required_times: tuple[str, ...] = ()
    optional_times: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.store}.{self.table}"

    @property
    def columns_with_time(self) -> tuple[str, ...]:
        return self.required_times + self.optional_times

    @property
    def columns_named(self) -> frozenset[str]:
        """Every column this spec names: a table without one of them is not the table legacy-stores.md describes."""
        named = (*self.key, self.account, self.updated, self.created, *self.statuses, *self.money, *self.counts,
                 *self.columns_with_time)
        return frozenset(column for column in named if column is not None)


TABLES: tuple[TableSpec, ...] = (
    TableSpec("cf_prod", "accounts", ("account_id",), "account_id", "updated_at", "created_at",
              statuses={"status": {"active", "suspended", "closed"}},
              required_times=("created_at", "updated_at")),
    TableSpec("cf_prod", "product_config", ("plan", "feature"), None),
    TableSpec("cf_prod", "entitlements", ("account_id", "feature"), "account_id", "updated_at",
              statuses={"source": {"plan", "manual", "dunning"}}, required_times=("updated_at",)),
    TableSpec("billing_prod", "invoices", ("invoice_id",), "account_id", "updated_at", "created_at",
              statuses={"status": INVOICE_STATUSES}, money=("amount_due", "amount_paid"),
              required_times=("created_at", "updated_at"), optional_times=("due_at",)),
    TableSpec("billing_prod", "charges", ("charge_id",), "account_id", None, "created_at",
              statuses={"status": {"pending", "succeeded", "failed", "refunded"}}, money=("amount",),
              required_times=("created_at",)),
    TableSpec("billing_prod", "dunning", ("account_id",), "account_id", "updated_at",
              statuses={"stage": DUNNING_STAGES}, required_times=("updated_at",), optional_times=("stage_since",)),
    TableSpec("billing_prod", "schedules", ("invoice_id", "attempt"), "account_id",
              statuses={"status": {"pending", "done", "cancelled"}}, counts=("attempt",),
              required_times=("scheduled_at",)),
    TableSpec("subs", "subs_account", ("account_id",), "account_id", "updated_at",
              required_times=("updated_at",)),
    TableSpec("subs", "subs_customer", ("id",), "account_id", None, "created_at",
              required_times=("created_at",)),
    TableSpec("subs", "subs_dunning", ("account_id",), "account_id", "updated_at",
              statuses={"stage": DUNNING_STAGES}, counts=("attempt_count",),
              required_times=("updated_at",), optional_times=("next_action_at",)),
    TableSpec("subs", "subs_subscription", ("account_id",), "account_id", "updated_at",
              statuses={"status": SUBSCRIPTION_STATUSES}, required_times=("updated_at",),
              optional_times=("current_period_end",)),
    TableSpec("subs", "subs_invoice", ("stripe_invoice_id",), "account_id", "updated_at",
              statuses={"status": INVOICE_STATUSES}, money=("amount_remaining",), counts=("attempt_count",),
              required_times=("updated_at",)),
)

TABLES_BY_STORE: dict[str, tuple[TableSpec, ...]] = {
    store: tuple(spec for spec in TABLES if spec.store == store) for store in ("cf_prod", "billing_prod", "subs")
}

_CURRENCY = re.compile(r"^[a-z]{3}$")


def _is_instant(value: Any) -> bool:
    try:
        return isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def key_of(spec: TableSpec, row: dict[str, Any]) -> dict[str, Any]:
    return {column: row.get(column) for column in spec.key}


def key_text(spec: TableSpec, row: dict[str, Any]) -> str:
    if len(spec.key) == 1:
        return str(row.get(spec.key[0]))
    return "\x1f".join(str(row.get(column)) for column in spec.key)


def stream_of(spec: TableSpec, row: dict[str, Any]) -> str | None:
    if spec.account is None:
        return CATALOG_STREAM
    account = row.get(spec.account)
    return account.strip() if isinstance(account, str) and account.strip() else None


def check_row(spec: TableSpec, row: dict[str, Any]) -> str | None:
    """Why this row cannot be recorded, or None when it can."""
    for column in spec.key:
        value = row.get(column)
        if value is None or (value.__class__ is str and not value.strip()):
            return f"missing key: {column} is empty"
    if spec.account is not None:
        account = row.get(spec.account)
        if account.__class__ is not str or not account.strip():
            return f"belongs to no account: {spec.account} is empty"
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


def source_time(spec: TableSpec, row: dict[str, Any] | None, *, known: bool, read_at: datetime) -> str:
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
