"""The stage, bad debt and delinquency of rules v1 at each boundary, and one second before it."""

from __future__ import annotations

import pytest
from freezegun import freeze_time

from tests.support.builders import (
    DAY,
    SECOND,
    T0,
    Invoice,
    an_account,
    due_in,
    now,
    paid,
    past_due,
    state_now,
)

BOUNDARIES = [
    # (days overdue, failed attempts, stage at the boundary, stage one second before)
    pytest.param(3, 0, "retrying", "grace", id="3 days overdue"),
    pytest.param(14, 0, "final_notice", "retrying", id="14 days overdue"),
    pytest.param(21, 0, "suspended", "final_notice", id="21 days overdue"),
    pytest.param(21, 9, "suspended", "final_notice", id="21 days overdue with many attempts"),
]


@pytest.mark.parametrize(("days", "attempts", "at_boundary", "just_before"), BOUNDARIES)
def test_the_stage_changes_exactly_when_days_overdue_reaches_a_threshold(days, attempts, at_boundary, just_before):
    with freeze_time(T0) as clock:
        events = an_account(invoice=past_due(days=days, attempts=attempts))
        assert state_now(events).stage == at_boundary
        assert state_now(events).days_overdue == days
        clock.move_to(T0 - SECOND)
        assert state_now(events).stage == just_before
        assert state_now(events).days_overdue == days - 1


def test_sixty_days_overdue_is_bad_debt_and_one_second_less_is_not():
    with freeze_time(T0) as clock:
        events = an_account(invoice=past_due(days=60))
        assert state_now(events).bad_debt is True
        clock.move_to(T0 - SECOND)
        assert state_now(events).bad_debt is False
        assert state_now(events).stage == "suspended"


@freeze_time(T0)
@pytest.mark.parametrize(("attempts", "stage"), [(0, "grace"), (1, "retrying"), (3, "retrying"), (4, "final_notice")])
def test_failed_attempts_on_a_fresh_past_due_invoice_decide_between_grace_retrying_and_final_notice(attempts, stage):
    """One day overdue: only the attempt thresholds (1 and 4) can apply."""
    state = state_now(an_account(invoice=past_due(days=1, attempts=attempts)))
    assert (state.stage, state.failed_attempts) == (stage, attempts)


@freeze_time(T0)
def test_a_payment_that_fails_twice_moves_the_account_to_retrying():
    """Two failed attempts on a past-due invoice are enough for retrying under rules v1."""
    state = state_now(an_account(invoice=past_due(days=1, attempts=2)))
    assert state.stage == "retrying"
    assert state.delinquent is True


@freeze_time(T0)
def test_an_invoice_falling_due_this_very_instant_is_past_due():
    state = state_now(an_account(invoice=Invoice(due_at=now())))
    assert (state.stage, state.days_overdue, state.delinquent) == ("grace", 0, False)


@freeze_time(T0)
def test_an_account_with_nothing_past_due_is_in_good_standing():
    state = state_now(an_account(invoices=(due_in(days=5, attempts=3), paid(days_ago=40))))
    assert (state.stage, state.days_overdue, state.failed_attempts, state.bad_debt) == ("none", 0, 0, False)
    assert state.past_due_invoices == ()


@freeze_time(T0)
def test_days_overdue_count_from_the_oldest_past_due_invoice_and_attempts_add_up_over_past_due_ones_only():
    oldest, newer, future = past_due(days=15, attempts=1), past_due(days=2, attempts=2), due_in(days=3, attempts=5)
    state = state_now(an_account(invoices=(newer, oldest, future)))
    assert state.days_overdue == 15
    assert state.failed_attempts == 3
    assert state.past_due_invoices == (oldest.invoice_id, newer.invoice_id)
    assert state.stage == "final_notice"


@freeze_time(T0)
def test_an_uncollectible_invoice_is_bad_debt_even_with_nothing_past_due():
    gone = Invoice(due_at=now() - 90 * DAY, status="uncollectible")
    state = state_now(an_account(invoice=gone))
    assert (state.stage, state.bad_debt, state.delinquent) == ("none", True, False)


@freeze_time(T0)
def test_a_suspended_stage_suspends_an_active_account():
    state = state_now(an_account(invoice=past_due(days=25)))
    assert (state.stage, state.status, state.delinquent) == ("suspended", "suspended", True)


@freeze_time(T0)
def test_a_closed_account_stays_closed_whatever_its_stage():
    state = state_now(an_account(status="closed", invoice=past_due(days=25)))
    assert (state.stage, state.status) == ("suspended", "closed")
