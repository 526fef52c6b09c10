"""From the fold's accumulator to `AccountFacts`: the authority table of rules-v1 §1, applied once.

    account, plan, closed        cf_prod.accounts (the row keyed by the account id)
    manual entitlements          cf_prod.entitlements rows with source = 'manual'
    invoice exists, amounts      billing_prod.invoices
    status, amount_paid,         the Stripe invoice object when the invoice has a stripe_invoice_id
      attempt_count                that Stripe knows (observed, not deleted); otherwise billing's
                                   status and amount_paid, and the number of its billing_prod.charges
    Stripe customer              metadata.account_id = the account, not deleted, earliest `created`
    subscription                 the latest `created` of the stream's subscriptions
    Stripe invoices              every invoice object routed to the account's stream

subs_* rows are kept as observed legacy rows and never decide anything.
Models are built with `trusted` (a lean `model_construct`): the data was made here, so it is not
validated again.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from domain.events import StripeObjectObserved
from domain.facts import (
    AccountFact,
    AccountFacts,
    DunningChange,
    InvoiceFact,
    LegacyRow,
    ManualEntitlement,
    StripeCustomerFact,
    StripeInvoiceFact,
    SubscriptionFact,
)
from domain.facts_builder import FactsBuilder
from domain.refs import ref_of
from domain.stripe_shapes import (
    from_unix,
    invoice_subscription,
    ref_id,
    subscription_period_end,
    subscription_status,
)
from domain.trusted import trusted, trusted_dict

_STRIPE_SIDE = frozenset({"stripe_invoices", "stripe_customers", "stripe_customer", "subscriptions", "subscription"})


def resolve_facts(b: FactsBuilder, as_of: datetime, *, legacy: bool = True,
                  only: Collection[str] | None = None) -> AccountFacts:
    """`only`: those fields alone (and account_id, as_of, events_folded), each as the whole facts
    have it, the others left out (reading one raises AttributeError): what the drift walk's
    instants read (truth.facts_read), not the Stripe side or the dunning history made again."""
    facts: dict[str, Any] = {"account_id": b.account_id, "as_of": as_of, "events_folded": b.count}
    if only is None or "legacy" in only:
        facts["legacy"] = _legacy(b) if legacy else {}
    if only is None or "account" in only:
        facts["account"] = _account(b)
    if only is None or "manual_entitlements" in only:
        facts["manual_entitlements"] = _manual(b)
    if only is None or "invoices" in only:
        facts["invoices"] = _invoices(b)
    if only is None or not _STRIPE_SIDE.isdisjoint(only):
        stripe_invoices, customers, subscriptions = _stripe_facts(b)
        live = [c for c in customers.values()
                if not c.deleted and c.account_id is not None and c.account_id == b.account_id]
        facts.update(
            stripe_invoices=stripe_invoices, stripe_customers=customers,
            stripe_customer=min(live, key=lambda c: (_seconds(c.created, missing=float("inf")), c.customer_id),
                                default=None),
            subscriptions=subscriptions,
            subscription=max(subscriptions.values(),
                             key=lambda s: (_seconds(s.created, missing=float("-inf")), s.subscription_id),
                             default=None))
    if only is None or "dunning_history" in only:
        facts["dunning_history"] = tuple(resolve_history(b))
    return trusted_dict(AccountFacts, facts)


def resolve_history(b: FactsBuilder) -> list[DunningChange]:
    """The builder's dunning history as `DunningChange`s, each made once: resolving a fold again
    after more events (domain/fold.Folding) adds the new changes, and a fork of it (Folding.fork)
    starts from those made before it."""
    resolved = b.resolved_history
    resolved += (
        trusted(DunningChange, at=at, invoice_id=invoice_id, status=view[0] if view else None,
                due_at=view[1] if view else None, attempt_count=view[2] if view else 0, ref=ref_of(event))
        for at, invoice_id, view, event in b.history[len(resolved):]
    )
    return resolved


def _seconds(created: datetime | None, *, missing: float) -> float:
    """An object without `created` sorts last: never the earliest customer nor the latest subscription."""
    return created.timestamp() if created is not None else missing


def _legacy(b: FactsBuilder) -> dict[str, dict[str, LegacyRow]]:
    return {
        f"{store}.{table}": {
            key: trusted(LegacyRow, store=store, table=table, key=e.key, row=e.row, position=e.position,
                         source_time=e.source_time, ref=ref_of(e))
            for key, e in rows.items()
        }
        for (store, table), rows in b.rows.items()
    }


def _account(b: FactsBuilder) -> AccountFact | None:
    rows = b.rows.get(("cf_prod", "accounts"), {})
    event = rows.get(b.account_id) if b.account_id is not None else None
    if event is None or event.row is None:
        return None
    kept = b.account_fact  # made by an earlier resolve, of the same observation
    if kept is None or kept[0] is not event:
        row = event.row
        kept = b.account_fact = (event, trusted(
            AccountFact, account_id=str(row.get("account_id", b.account_id)), plan=row.get("plan"),
            status=row.get("status"), closed=row.get("status") == "closed", ref=ref_of(event)))
    return kept[1]


def _manual(b: FactsBuilder) -> dict[str, ManualEntitlement]:
    manual = {}
    for event in b.rows.get(("cf_prod", "entitlements"), {}).values():
        row = event.row or {}
        if row.get("source") == "manual":
            feature = str(row.get("feature", event.key.get("feature")))
            manual[feature] = trusted(ManualEntitlement, feature=feature, enabled=bool(row.get("enabled")),
                                      ref=ref_of(event))
    return manual


def _invoices(b: FactsBuilder) -> dict[str, InvoiceFact]:
    invoices = {}
    for invoice_id, event in b.rows.get(("billing_prod", "invoices"), {}).items():
        kept = b.invoice_facts.get(invoice_id)  # made by an earlier resolve, and not touched since
        if kept is not None:
            invoices[invoice_id] = kept
            continue
        row = event.row or {}
        status, amount_paid, attempts, stripe = b.true_invoice(invoice_id)  # type: ignore[misc]
        charges = b.invoice_charges.get(invoice_id, {})
        invoices[invoice_id] = trusted(
            InvoiceFact, invoice_id=invoice_id, account_id=row.get("account_id"),
            stripe_invoice_id=row.get("stripe_invoice_id"), currency=row.get("currency"),
            amount_due=int(row.get("amount_due") or 0), due_at=b.invoice_due.get(invoice_id),
            status=str(status), amount_paid=int(amount_paid or 0), attempt_count=attempts,
            authority="stripe" if stripe is not None else "billing", row_ref=ref_of(event),
            stripe_ref=ref_of(stripe) if stripe is not None else None,
            charge_refs=() if stripe is not None else tuple(ref_of(charges[k]) for k in sorted(charges)),
        )
        b.invoice_facts[invoice_id] = invoices[invoice_id]
    return invoices


def _stripe_facts(b: FactsBuilder) -> tuple[dict[str, StripeInvoiceFact], dict[str, StripeCustomerFact],
                                             dict[str, SubscriptionFact]]:
    invoices: dict[str, StripeInvoiceFact] = {}
    customers: dict[str, StripeCustomerFact] = {}
    subscriptions: dict[str, SubscriptionFact] = {}
    by_table: dict[str, dict[str, Any]] = {"invoice": invoices, "customer": customers, "subscription": subscriptions}
    for key, (_, event) in b.stripe.items():
        table, object_id = key
        if table not in by_table:
            continue
        kept = b.stripe_facts.get(key)  # the fact of the same observation, made by an earlier resolve
        if kept is None or kept[0] is not event:
            kept = b.stripe_facts[key] = (event, _stripe_fact(table, object_id, event))
        by_table[table][object_id] = kept[1]
    return invoices, customers, subscriptions


def _stripe_fact(table: str, object_id: str, event: StripeObjectObserved) -> Any:
    obj = event.object
    if table == "invoice":
        return trusted(
            StripeInvoiceFact, stripe_invoice_id=object_id, customer=ref_id(obj.get("customer")),
            subscription=invoice_subscription(obj), status=str(obj.get("status")),
            amount_due=int(obj.get("amount_due") or 0), amount_paid=int(obj.get("amount_paid") or 0),
            attempt_count=int(obj.get("attempt_count") or 0), deleted=event.deleted, ref=ref_of(event))
    if table == "customer":
        metadata = obj.get("metadata") or {}
        return trusted(
            StripeCustomerFact, customer_id=object_id, account_id=metadata.get("account_id"),
            created=from_unix(obj.get("created")), deleted=bool(event.deleted or obj.get("deleted")),
            ref=ref_of(event))
    return trusted(
        SubscriptionFact, subscription_id=object_id, customer=ref_id(obj.get("customer")),
        status=subscription_status(obj, deleted=event.deleted), created=from_unix(obj.get("created")),
        current_period_end=subscription_period_end(obj), ref=ref_of(event))
