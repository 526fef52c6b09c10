"""The true state of one account at an instant, from its authoritative sources (rules v1 §1).

Reads only what rules v1 names as authority: `cf_prod.accounts` (plan, closed), product_config,
manual entitlements, `billing_prod.invoices` (existence, amount_due, due_at; status and amount_paid
of invoices Stripe does not know), `billing_prod.charges` (attempts of those), and the current
Stripe objects. Everything else in the records is what gets checked against the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from simulation.oracle.rules_v1 import Receivable, Standing, Thresholds, account_status, entitlement_enabled, standing
from simulation.records import AccountRecords, at


@dataclass(frozen=True)
class TrueInvoice:
    status: str
    amount_paid: int
    amount_remaining: int
    attempt_count: int


@dataclass(frozen=True)
class TrueSubscription:
    id: str
    status: str
    current_period_end: datetime | None


@dataclass(frozen=True)
class TrueState:
    account_id: str
    status: str
    standing: Standing
    stripe_invoices: dict[str, TrueInvoice]  # by Stripe invoice id, every Stripe invoice of the account
    customer_id: str | None
    subscription: TrueSubscription | None
    entitlements: dict[str, bool]  # every non-manual feature of the catalogue
    manual_features: frozenset[str]


def true_state(
    records: AccountRecords, plan_features: dict[str, frozenset[str]], when: datetime, *, rules: Thresholds | None = None
) -> TrueState:
    stripe_by_id = {inv["id"]: inv for inv in records.stripe_invoices}
    charges_per_invoice: dict[str, int] = {}
    for charge in records.charges:
        charges_per_invoice[charge["invoice_id"]] = charges_per_invoice.get(charge["invoice_id"], 0) + 1

    receivables: list[Receivable] = []
    uncollectible = False
    amount_due_of: dict[str, int] = {}
    for row in records.invoices:
        stripe = stripe_by_id.get(row["stripe_invoice_id"]) if row["stripe_invoice_id"] else None
        if stripe is not None:
            amount_due_of[stripe["id"]] = row["amount_due"]
            status, attempts = stripe["status"], stripe["attempt_count"]
        else:
            status, attempts = row["status"], charges_per_invoice.get(row["invoice_id"], 0)
        if status == "open":
            receivables.append(Receivable(row["due_at"], attempts))
        uncollectible = uncollectible or status == "uncollectible"

    dunning = standing(receivables, uncollectible=uncollectible, at=when, rules=rules)
    status = account_status(closed=records.account["status"] == "closed", stage=dunning.stage)

    invoices = {
        sid: TrueInvoice(
            status=inv["status"],
            amount_paid=inv["amount_paid"],
            amount_remaining=amount_due_of.get(sid, inv["amount_due"]) - inv["amount_paid"],
            attempt_count=inv["attempt_count"],
        )
        for sid, inv in stripe_by_id.items()
    }

    live = [
        c for c in records.customers
        if not c.get("deleted") and c.get("metadata", {}).get("account_id") == records.account_id
    ]
    customer_id = min(live, key=lambda c: (c["created"], c["id"]))["id"] if live else None
    subscription = None
    if records.subscriptions:
        latest = max(records.subscriptions, key=lambda s: (s["created"], s["id"]))
        period_end = latest["items"]["data"][0].get("current_period_end")
        subscription = TrueSubscription(
            latest["id"], latest["status"], at(period_end) if period_end is not None else None
        )

    manual = frozenset(e["feature"] for e in records.entitlements if e["source"] == "manual")
    plan = plan_features.get(records.account["plan"], frozenset())
    free = plan_features.get("free", frozenset())
    catalogue = set().union(*plan_features.values())
    entitlements = {
        f: entitlement_enabled(f, status=status, plan_features=plan, free_features=free)
        for f in sorted(catalogue - manual)
    }
    return TrueState(
        account_id=records.account_id,
        status=status,
        standing=dunning,
        stripe_invoices=invoices,
        customer_id=customer_id,
        subscription=subscription,
        entitlements=entitlements,
        manual_features=manual,
    )
