"""`explain` cites only refs its own timeline shows: every ref of `because` is the `ref` of a timeline entry."""

from __future__ import annotations

import pytest
from freezegun import freeze_time

from domain.rules import RULES_V1
from projections.explain import explanation
from tests.support.builders import (
    ACCOUNT,
    DAY,
    SECOND,
    T0,
    an_account,
    legacy,
    now,
    paid,
    past_due,
    stripe,
    stripe_invoice,
)


def a_stripe_invoice_read_by_a_list(*, days: float, attempts: int) -> list:
    """A billing invoice whose Stripe twin was seen by a list read (no evt_ id), not by an event."""
    invoice = past_due(days=days, attempts=attempts, stripe_status="open")
    events = invoice.events()
    listed = stripe("invoice", stripe_invoice(f"in_{invoice.invoice_id}", "open", attempts=attempts),
                    at=invoice.observed_at + 2 * SECOND)
    return [*events, listed]


def a_schedule(invoice_id: str, attempt: int) -> object:
    row = {"invoice_id": invoice_id, "attempt": attempt, "account_id": ACCOUNT, "run_at": (now() + DAY).isoformat()}
    return legacy("billing_prod", "schedules", {"invoice_id": invoice_id, "attempt": attempt}, row, at=now() - DAY)


ACCOUNTS = {
    "current": lambda: an_account(),
    "past due, billing decides": lambda: an_account(invoice=past_due(days=5, attempts=2)),
    "past due, Stripe event decides": lambda: an_account(invoice=past_due(days=16, attempts=4, stripe_status="open")),
    "past due, Stripe list read decides": lambda: an_account(extra=tuple(a_stripe_invoice_read_by_a_list(
        days=25, attempts=3))),
    "paid, with a schedule and manual entitlement": lambda: an_account(
        invoices=(paid(days_ago=40), past_due(days=2, attempts=1)), manual=("sso",),
        extra=(a_schedule("inv_000042_99", 2),)),
    "bad debt": lambda: an_account(invoice=past_due(days=70, attempts=5)),
}


@pytest.mark.parametrize("name", list(ACCOUNTS))
@freeze_time(T0)
def test_every_ref_because_cites_is_the_ref_of_a_timeline_entry(name):
    events = ACCOUNTS[name]()
    ex = explanation(ACCOUNT, events, [], RULES_V1, now())
    shown = {entry["ref"] for entry in ex.timeline}
    cited = {ref for why in ex.as_json()["because"].values() for ref in why["events"]}
    assert cited, "the account's state must cite some events for this test to mean anything"
    assert cited - shown == set(), f"because cites refs the timeline does not show; the timeline shows {shown}"
