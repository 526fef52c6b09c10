"""Builders for the domain tests: an account's events with memorable defaults.

    an_account(invoice=past_due(days=1, attempts=2))     -> list of events
    state_now(events)                                    -> TrueState at datetime.now() (freezegun)

Times are relative to "now", so tests freeze the clock with freezegun; `domain/` itself never
reads the clock. (This module holds no tests; it is named test_domain_* to live with them.)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.catalog import Catalog, fold_catalog
from domain.events import CATALOG_STREAM, AccountEvent, LegacyRowObserved, StripeObjectObserved
from domain.fold import fold
from domain.rules import RULES_V1, Rules
from domain.truth import TrueState, true_state

ACCOUNT = "acc_000042"
T0 = datetime(2026, 3, 1, tzinfo=UTC)  # the instant most tests freeze the clock at
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
_versions = itertools.count(1)
_positions = itertools.count(1)


def now() -> datetime:
    return datetime.now(UTC)


def iso(t: datetime) -> str:
    return t.isoformat()


def unix(t: datetime) -> int:
    return int(t.timestamp())


def legacy(store: str, table: str, key: dict[str, Any], row: dict[str, Any] | None, *, at: datetime,
           account: str = ACCOUNT) -> LegacyRowObserved:
    return LegacyRowObserved(
        originator_id=account, originator_version=next(_versions), store=store, table=table, key=key,
        row=row, position=f"snap:{next(_positions)}", source_time=at, recorded_at=max(at, now()))


def stripe(table: str, obj: dict[str, Any], *, at: datetime, evt: str | None = None, deleted: bool = False,
           account: str = ACCOUNT) -> StripeObjectObserved:
    """An observation by event `evt` created at `at`, or a list read (evt None) timed `at`."""
    return StripeObjectObserved(
        originator_id=account, originator_version=next(_versions), table=table, key={"id": obj["id"]},
        object=obj, deleted=deleted, event_id=evt, event_type=f"{table}.updated" if evt else None,
        event_created=at if evt else None, via="webhook" if evt else "list",
        position=evt or f"list:{next(_positions)}", source_time=at, recorded_at=max(at, now()))


def stripe_invoice(sid: str, status: str = "open", *, attempts: int = 0, amount_due: int = 4900,
                   amount_paid: int = 0, subscription: str = "sub_1", basil: bool = True) -> dict[str, Any]:
    obj = {"id": sid, "object": "invoice", "status": status, "attempt_count": attempts, "customer": "cus_1",
           "amount_due": amount_due, "amount_paid": amount_paid, "amount_remaining": amount_due - amount_paid}
    if basil:
        obj["parent"] = {"type": "subscription_details", "subscription_details": {"subscription": subscription}}
    else:
        obj["subscription"] = subscription
    return obj


def stripe_subscription(sub_id: str, status: str = "active", *, created: datetime, period_end: datetime,
                        basil: bool = True) -> dict[str, Any]:
    obj = {"id": sub_id, "object": "subscription", "status": status, "created": unix(created), "customer": "cus_1"}
    if basil:
        obj["items"] = {"object": "list", "data": [{"id": "si_1", "current_period_end": unix(period_end)}]}
    else:
        obj["current_period_end"] = unix(period_end)
        obj["items"] = {"object": "list", "data": [{"id": "si_1"}]}
    return obj


def stripe_customer(cus_id: str, *, created: datetime, account: str = ACCOUNT) -> dict[str, Any]:
    return {"id": cus_id, "object": "customer", "created": unix(created), "metadata": {"account_id": account}}


@dataclass
class Invoice:
    """One billing_prod invoice; with `stripe_status` it has a stripe_invoice_id and Stripe's view."""

    due_at: datetime
    status: str = "open"
    attempts: int = 0
    invoice_id: str = field(default_factory=lambda: f"inv_000042_{next(_positions):02d}")
    stripe_status: str | None = None
    billing_status: str | None = None  # what billing says, when Stripe decides
    amount_due: int = 4900
    amount_paid: int = 0

    @property
    def observed_at(self) -> datetime:
        """When it was issued: a week before it fell due (never after now)."""
        return min(self.due_at, now()) - 7 * DAY

    def events(self) -> list[AccountEvent]:
        sid = f"in_{self.invoice_id}" if self.stripe_status else None
        row = {"invoice_id": self.invoice_id, "account_id": ACCOUNT, "stripe_invoice_id": sid,
               "status": self.billing_status or self.status, "currency": "usd", "amount_due": self.amount_due,
               "amount_paid": self.amount_paid, "due_at": iso(self.due_at), "created_at": iso(self.observed_at),
               "updated_at": iso(self.observed_at)}
        events: list[AccountEvent] = [
            legacy("billing_prod", "invoices", {"invoice_id": self.invoice_id}, row, at=self.observed_at)]
        if sid:
            obj = stripe_invoice(sid, self.stripe_status, attempts=self.attempts, amount_due=self.amount_due,
                                 amount_paid=self.amount_paid)
            events.append(stripe(table="invoice", obj=obj, at=self.observed_at + SECOND, evt=f"evt_{sid}"))
        else:
            events += [failed_charge(self.invoice_id, n, at=self.observed_at + n * SECOND)
                       for n in range(1, self.attempts + 1)]
        return events


def failed_charge(invoice_id: str, n: int, *, at: datetime) -> LegacyRowObserved:
    charge_id = f"ch_{invoice_id}_{n}"
    row = {"charge_id": charge_id, "account_id": ACCOUNT, "invoice_id": invoice_id, "stripe_charge_id": None,
           "amount": 4900, "status": "failed", "failure_code": "card_declined", "created_at": iso(at)}
    return legacy("billing_prod", "charges", {"charge_id": charge_id}, row, at=at)


def past_due(days: float = 1, attempts: int = 0, **kw: Any) -> Invoice:
    """An open invoice that fell due `days` ago."""
    return Invoice(due_at=now() - timedelta(days=days), attempts=attempts, **kw)


def due_in(days: float, **kw: Any) -> Invoice:
    return Invoice(due_at=now() + timedelta(days=days), **kw)


def paid(days_ago: float = 10, **kw: Any) -> Invoice:
    return Invoice(due_at=now() - timedelta(days=days_ago), status="paid", amount_paid=4900, **kw)


def account_row(plan: str = "pro", status: str = "active", *, at: datetime | None = None) -> LegacyRowObserved:
    at = at or now() - 365 * DAY
    row = {"account_id": ACCOUNT, "name": "Acme", "plan": plan, "status": status,
           "created_at": iso(at), "updated_at": iso(at)}
    return legacy("cf_prod", "accounts", {"account_id": ACCOUNT}, row, at=at)


def manual_entitlement(feature: str, enabled: bool = True) -> LegacyRowObserved:
    at = now() - 100 * DAY
    row = {"account_id": ACCOUNT, "feature": feature, "enabled": enabled, "source": "manual", "updated_at": iso(at)}
    return legacy("cf_prod", "entitlements", {"account_id": ACCOUNT, "feature": feature}, row, at=at)


def an_account(*, plan: str = "pro", status: str = "active", invoice: Invoice | None = None,
               invoices: tuple[Invoice, ...] = (), manual: tuple[str, ...] = (),
               extra: tuple[AccountEvent, ...] = ()) -> list[AccountEvent]:
    events: list[AccountEvent] = [account_row(plan, status)]
    for inv in ((invoice,) if invoice else ()) + tuple(invoices):
        events += inv.events()
    events += [manual_entitlement(f) for f in manual]
    return events + list(extra)


CATALOG_PLANS = {"free": ("docs",), "pro": ("api", "docs", "sso"), "team": ("api", "docs")}


def a_catalog(plans: dict[str, tuple[str, ...]] = CATALOG_PLANS) -> Catalog:
    since_always = datetime(1970, 1, 1, tzinfo=UTC)
    return fold_catalog(
        legacy("cf_prod", "product_config", {"plan": p, "feature": f}, {"plan": p, "feature": f},
               at=since_always, account=CATALOG_STREAM)
        for p, features in plans.items() for f in features)


def state_at(at: datetime, events: list[AccountEvent], *, rules: Rules = RULES_V1,
             catalog: Catalog | None = None) -> TrueState:
    return true_state(fold(events, as_of=at), catalog or a_catalog(), rules, at)


def state_now(events: list[AccountEvent], **kw: Any) -> TrueState:
    return state_at(now(), events, **kw)
