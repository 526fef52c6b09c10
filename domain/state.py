"""The true state of an account (rules-v1 §2) as plain, JSON-serialisable data.

`TrueState.because[field]` says which rule and which events decided each field: top-level fields
by name (`stage`, `next_action_at`, ...), per-invoice fields as `invoices.<id>.<field>`, Stripe
invoices as `stripe_invoices.<id>`, entitlements as `entitlements.<feature>`. Events are named
by their evt_ id or as store.table[key]@position.
"""

from __future__ import annotations

from datetime import datetime

from domain.facts import Frozen

DELINQUENT_STAGES = ("retrying", "final_notice", "suspended")


class Because(Frozen):
    rule: str  # e.g. "stage = final_notice: rule 'final_notice' (failed_attempts 4 >= 4)"
    refs: tuple[str, ...] = ()  # the events that decided it

    @property
    def text(self) -> str:
        """Rule and refs in one line, for people (not serialised)."""
        return self.rule + (f", from {', '.join(self.refs)}" if self.refs else "")

    def __str__(self) -> str:
        return self.text


class TrueInvoice(Frozen):
    invoice_id: str
    stripe_invoice_id: str | None
    status: str
    currency: str | None
    amount_due: int
    amount_paid: int
    amount_remaining: int  # amount_due - amount_paid
    attempt_count: int
    due_at: datetime | None


class TrueStripeInvoice(Frozen):
    """What subs_invoice must hold for a Stripe invoice of the account."""

    stripe_invoice_id: str
    invoice_id: str | None  # the billing_prod invoice that points at it, if any
    status: str
    amount_due: int  # billing's amount_due when linked (billing is its authority), else Stripe's
    amount_paid: int
    amount_remaining: int
    attempt_count: int


class TrueSubscription(Frozen):
    subscription_id: str
    status: str
    current_period_end: datetime | None


class TrueState(Frozen):
    account_id: str | None
    as_of: datetime
    rules_version: str
    account_exists: bool
    plan: str | None
    status: str  # active | suspended | closed
    stage: str  # none | grace | retrying | final_notice | suspended
    stage_since: datetime | None
    days_overdue: int
    failed_attempts: int
    bad_debt: bool
    delinquent: bool
    next_action_at: datetime | None
    past_due_invoices: tuple[str, ...]
    entitlements: dict[str, bool]  # every non-manual catalog feature
    manual_features: tuple[str, ...]  # excluded from `entitlements`
    invoices: dict[str, TrueInvoice]
    stripe_invoices: dict[str, TrueStripeInvoice]
    stripe_customer_id: str | None
    subscription: TrueSubscription | None
    because: dict[str, Because]
