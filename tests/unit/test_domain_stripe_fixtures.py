"""Real Stripe payloads (shared/fixtures/stripe), basil and older shapes, folded into facts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from domain.events import StripeObjectObserved
from domain.fold import fold
from domain.rules import RULES_V1
from domain.truth import true_state
from tests.support.builders import ACCOUNT, a_catalog, account_row, iso, legacy
from tests.support.fixtures import stripe_fixtures

FIXTURES = stripe_fixtures()


def observed(name: str, version: int) -> StripeObjectObserved:
    envelope = json.loads((FIXTURES / name).read_text())
    obj = envelope["data"]["object"]
    created = datetime.fromtimestamp(envelope["created"], UTC)
    return StripeObjectObserved(
        originator_id=ACCOUNT, originator_version=version, table=obj["object"], key={"id": obj["id"]},
        object=obj, event_id=envelope["id"], event_type=envelope["type"], event_created=created, via="events_api",
        position=envelope["id"], source_time=created, recorded_at=created)


def test_a_basil_invoice_marked_uncollectible_after_a_failed_payment_is_bad_debt():
    failed = observed("derived/invoice.payment_failed.basil_envelope.json", 2)
    gave_up = observed("derived/invoice.marked_uncollectible.basil_envelope.json", 3)
    due = failed.source_time
    row = {"invoice_id": "inv_1", "account_id": ACCOUNT, "stripe_invoice_id": "in_1234", "status": "open",
           "currency": "usd", "amount_due": 24900, "amount_paid": 0, "due_at": iso(due)}
    billing = legacy("billing_prod", "invoices", {"invoice_id": "inv_1"}, row, at=due - timedelta(days=1))
    events = [account_row(at=due - timedelta(days=400)), billing, gave_up, failed]
    at = gave_up.source_time + timedelta(days=1)
    facts = fold(events, as_of=at)
    assert facts.stripe_invoices["in_1234"].subscription == "sub_1234"
    assert (facts.invoices["inv_1"].status, facts.invoices["inv_1"].attempt_count) == ("uncollectible", 8)
    state = true_state(facts, a_catalog(), RULES_V1, at)
    assert (state.bad_debt, state.stage) == (True, "none")
    assert state.because["bad_debt"].refs[-1] == "evt_derived_marked_uncollectible_0001"
    before = fold(events, as_of=gave_up.source_time - timedelta(seconds=1))
    assert (before.invoices["inv_1"].status, before.invoices["inv_1"].attempt_count) == ("open", 1)


def test_an_older_shape_subscription_created_then_deleted_is_canceled_with_its_top_level_period_end():
    created = observed("real_captures/customer.subscription.created.supabase-sync-engine.json", 1)
    deleted = observed("real_captures/customer.subscription.deleted.supabase-sync-engine.json", 2)
    facts = fold([deleted, created], as_of=deleted.source_time)
    assert facts.subscription.status == "canceled"
    assert facts.subscription.current_period_end == datetime.fromtimestamp(1625740918, UTC)


def test_two_payloads_sharing_an_event_id_count_once():
    """The fixtures' invoice.paid and invoice.voided were hand-edited from one another: same evt_ id."""
    paid = observed("real_captures/invoice.paid.supabase-sync-engine.json", 1)
    voided = observed("real_captures/invoice.voided.supabase-sync-engine.json", 2)
    assert paid.event_id == voided.event_id
    assert fold([voided, paid], as_of=paid.source_time).stripe_invoices[paid.object_id].status == "paid"
