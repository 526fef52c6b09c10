"""What the fold knows about one account as of an instant: the facts of rules-v1 §1.

`AccountFacts` holds
  - the latest observed legacy rows, per (store, table, key) — deleted rows are absent;
  - the authoritative facts, each already resolved by the authority table of rules-v1 §1
    (which store decides which value), with references to the events that decided them;
  - `dunning_history`: each change of an invoice's (true status, due_at, attempt_count), in
    source-time order, so that the rules can tell when the current stage began.

References ("refs") name an event: a Stripe event by its `evt_` id, anything else as
`store.table[key]@position` (domain/refs.py, the one ref format). Everything here is plain data and JSON-serialisable.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")




def row_key(key: Mapping[str, Any]) -> str:
    """A row's primary key as one string to look it up by (not a ref: see domain/refs.py): the value, or the
    values in column-name order joined by '/'."""
    if len(key) == 1:
        for value in key.values():
            return str(value)
    return "/".join([str(key[column]) for column in sorted(key)])


class LegacyRow(Frozen):
    store: str
    table: str
    key: dict[str, Any]
    row: dict[str, Any]
    position: str
    source_time: datetime
    ref: str


class AccountFact(Frozen):
    """cf_prod.accounts: the authority for existence, plan and closure."""

    account_id: str
    plan: str | None
    status: str | None
    closed: bool
    ref: str


class ManualEntitlement(Frozen):
    feature: str
    enabled: bool
    ref: str


class InvoiceFact(Frozen):
    """A billing_prod.invoices invoice with its true status, amount_paid and attempt_count."""

    invoice_id: str
    account_id: str | None
    stripe_invoice_id: str | None
    currency: str | None
    amount_due: int
    due_at: datetime | None
    status: str
    amount_paid: int
    attempt_count: int
    authority: Literal["stripe", "billing"]  # who decided status / amount_paid / attempt_count
    row_ref: str
    stripe_ref: str | None = None
    charge_refs: tuple[str, ...] = ()


class StripeInvoiceFact(Frozen):
    """An invoice as Stripe says it is (the winning observation of rules-v1 §1)."""

    stripe_invoice_id: str
    customer: str | None
    subscription: str | None
    status: str
    amount_due: int
    amount_paid: int
    attempt_count: int
    deleted: bool
    ref: str


class StripeCustomerFact(Frozen):
    customer_id: str
    account_id: str | None  # metadata.account_id
    created: datetime | None
    deleted: bool
    ref: str


class SubscriptionFact(Frozen):
    subscription_id: str
    customer: str | None
    status: str
    created: datetime | None
    current_period_end: datetime | None
    ref: str


class DunningChange(Frozen):
    """From `at` on, the invoice's (true status, due_at, attempt_count) is this (status None: gone)."""

    at: datetime
    invoice_id: str
    status: str | None
    due_at: datetime | None
    attempt_count: int
    ref: str


class AccountFacts(Frozen):
    account_id: str | None
    as_of: datetime
    events_folded: int
    legacy: dict[str, dict[str, LegacyRow]]  # "store.table" -> row_key -> row
    account: AccountFact | None
    manual_entitlements: dict[str, ManualEntitlement]
    invoices: dict[str, InvoiceFact]
    stripe_invoices: dict[str, StripeInvoiceFact]
    stripe_customers: dict[str, StripeCustomerFact]
    stripe_customer: StripeCustomerFact | None
    subscriptions: dict[str, SubscriptionFact]
    subscription: SubscriptionFact | None
    dunning_history: tuple[DunningChange, ...]

    def rows(self, store: str, table: str) -> list[LegacyRow]:
        """The current rows of one legacy table, in key order."""
        table_rows = self.legacy.get(f"{store}.{table}", {})
        return [table_rows[k] for k in sorted(table_rows)]

    def row(self, store: str, table: str, key: dict[str, Any]) -> LegacyRow | None:
        return self.legacy.get(f"{store}.{table}", {}).get(row_key(key))
