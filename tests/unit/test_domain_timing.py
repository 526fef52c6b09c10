"""When the stage next changes by itself (next_action_at) and when the current one began (stage_since)."""

from __future__ import annotations

import pytest
from freezegun import freeze_time

from domain.fold import fold
from domain.rules import RULES_V1
from domain.truth import true_state
from tests.support.builders import (
    ACCOUNT,
    DAY,
    T0,
    Invoice,
    a_catalog,
    an_account,
    due_in,
    failed_charge,
    iso,
    legacy,
    now,
    paid,
    past_due,
    state_at,
    state_now,
)


@freeze_time(T0)
def test_next_action_is_an_open_invoice_falling_due():
    upcoming = due_in(days=2)
    state = state_now(an_account(invoice=upcoming))
    assert state.stage == "none"
    assert state.next_action_at == upcoming.due_at


@freeze_time(T0)
def test_next_action_is_the_three_day_threshold_for_a_fresh_past_due_invoice():
    late = past_due(days=1)
    state = state_now(an_account(invoice=late))
    assert state.next_action_at == late.due_at + 3 * DAY


@freeze_time(T0)
def test_next_action_skips_crossings_that_change_nothing():
    """Retrying with one attempt: 3 days changes nothing; 14 days moves to final_notice."""
    late = past_due(days=1, attempts=1)
    state = state_now(an_account(invoices=(late, due_in(days=1))))
    assert state.stage == "retrying"
    assert state.next_action_at == late.due_at + 14 * DAY


@freeze_time(T0)
def test_next_action_of_a_suspended_account_is_when_it_becomes_bad_debt():
    late = past_due(days=30)
    assert state_now(an_account(invoice=late)).next_action_at == late.due_at + 60 * DAY


@freeze_time(T0)
def test_there_is_no_next_action_when_nothing_can_change_without_an_event():
    assert state_now(an_account(invoice=past_due(days=61))).next_action_at is None
    assert state_now(an_account(invoice=paid())).next_action_at is None
    assert state_now(an_account()).next_action_at is None


@freeze_time(T0)
def test_a_state_evaluated_at_its_next_action_has_moved_on():
    events = an_account(invoice=past_due(days=1))
    first = state_now(events)
    later = state_at(first.next_action_at, events)
    assert (first.stage, later.stage) == ("grace", "retrying")
    assert later.stage_since == first.next_action_at


@freeze_time(T0)
def test_stage_since_is_the_threshold_crossing():
    late = past_due(days=5)
    state = state_now(an_account(invoice=late))
    assert state.stage == "retrying"
    assert state.stage_since == late.due_at + 3 * DAY
    assert "reaches 3 days overdue" in state.because["stage_since"].rule


@freeze_time(T0)
def test_stage_since_is_the_time_of_the_event_that_caused_it():
    """Grace until a charge fails two days after the due date: retrying from that charge on."""
    late = past_due(days=2.5)
    charge_at = late.due_at + 2 * DAY
    charge = failed_charge(late.invoice_id, 1, at=charge_at)
    state = state_now(an_account(invoice=late, extra=(charge,)))
    assert (state.stage, state.stage_since) == ("retrying", charge_at)
    assert state.because["stage_since"].refs == (f"billing_prod.charges[ch_{late.invoice_id}_1]@{charge.position}",)


@freeze_time(T0)
def test_stage_since_of_an_account_that_paid_is_the_payment():
    late = past_due(days=10, attempts=2)
    paid_at = now() - DAY
    row = {"invoice_id": late.invoice_id, "account_id": ACCOUNT, "stripe_invoice_id": None, "status": "paid",
           "currency": "usd", "amount_due": 4900, "amount_paid": 4900, "due_at": iso(late.due_at)}
    payment = legacy("billing_prod", "invoices", {"invoice_id": late.invoice_id}, row, at=paid_at)
    state = state_now(an_account(invoice=late, extra=(payment,)))
    assert (state.stage, state.stage_since) == ("none", paid_at)


@freeze_time(T0)
def test_an_account_never_past_due_has_no_stage_since():
    assert state_now(an_account(invoices=(due_in(days=3), paid()))).stage_since is None


@freeze_time(T0)
def test_stage_since_an_invoice_observed_already_past_due_is_its_observation():
    """Billing only told us about the invoice after it was due: grace from that event."""
    seen_at = now() - DAY
    invoice = Invoice(due_at=now() - 2 * DAY)
    row = {"invoice_id": invoice.invoice_id, "account_id": ACCOUNT, "stripe_invoice_id": None, "status": "open",
           "currency": "usd", "amount_due": 4900, "amount_paid": 0, "due_at": iso(invoice.due_at)}
    events = an_account(extra=(legacy("billing_prod", "invoices", {"invoice_id": invoice.invoice_id}, row,
                                      at=seen_at),))
    state = state_now(events)
    assert (state.stage, state.stage_since) == ("grace", seen_at)


@freeze_time(T0)
def test_the_state_cannot_be_asked_for_before_the_facts_it_folded():
    facts = fold(an_account(), as_of=now())
    with pytest.raises(ValueError, match="before the facts' as_of"):
        true_state(facts, a_catalog(), RULES_V1, now() - DAY)
