"""The fleet's own rules v1 oracle (`simulation.oracle.rules_v1`) on hand-picked boundaries."""

from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from simulation.oracle.rules_v1 import Receivable, account_status, entitlement_enabled, standing

T = datetime(2026, 3, 1, tzinfo=UTC)
DAY, HOUR, SECOND = timedelta(days=1), timedelta(hours=1), timedelta(seconds=1)


def due(ago: timedelta, attempts: int = 0) -> Receivable:
    """An open invoice that fell due `ago` before T (negative: falls due after T)."""
    return Receivable(due_at=T - ago, attempt_count=attempts)


def test_an_account_with_nothing_open_is_in_good_standing_for_good():
    s = standing([], at=T)
    assert (s.stage, s.days_overdue, s.failed_attempts, s.bad_debt, s.delinquent) == ("none", 0, 0, False, False)
    assert s.next_action_at is None


def test_an_invoice_due_exactly_now_is_past_due():
    s = standing([due(timedelta(0))], at=T)
    assert (s.stage, s.days_overdue) == ("grace", 0)
    assert s.next_action_at == T + 3 * DAY


def test_an_invoice_due_a_second_from_now_is_not_past_due_yet_and_is_the_next_action():
    s = standing([due(-SECOND)], at=T)
    assert s.stage == "none"
    assert s.next_action_at == T + SECOND


def test_one_failed_attempt_is_enough_for_retrying_on_the_first_day():
    """A stage applies when ANY of its conditions holds."""
    assert standing([due(HOUR, attempts=1)], at=T).stage == "retrying"


@pytest.mark.parametrize(
    ("ago", "stage"),
    [
        (3 * DAY - SECOND, "grace"),
        (3 * DAY, "retrying"),
        (14 * DAY - SECOND, "retrying"),
        (14 * DAY, "final_notice"),
        (21 * DAY - SECOND, "final_notice"),
        (21 * DAY, "suspended"),
    ],
)
def test_days_overdue_thresholds_are_inclusive_and_rounded_down(ago, stage):
    assert standing([due(ago)], at=T).stage == stage


def test_four_failed_attempts_mean_final_notice_before_two_weeks():
    s = standing([due(DAY, attempts=4)], at=T)
    assert s.stage == "final_notice"
    assert s.next_action_at == T - DAY + 21 * DAY  # 3 and 14 days change nothing: the next is 21


def test_failed_attempts_add_up_over_every_past_due_invoice_only():
    s = standing([due(2 * DAY, attempts=2), due(HOUR, attempts=2), due(-DAY, attempts=5)], at=T)
    assert (s.failed_attempts, s.stage) == (4, "final_notice")


def test_days_overdue_count_from_the_oldest_past_due_invoice():
    s = standing([due(DAY), due(25 * DAY)], at=T)
    assert (s.days_overdue, s.stage) == (25, "suspended")


@pytest.mark.parametrize(("ago", "bad_debt"), [(60 * DAY - SECOND, False), (60 * DAY, True)])
def test_bad_debt_at_sixty_days_overdue(ago, bad_debt):
    assert standing([due(ago)], at=T).bad_debt is bad_debt


def test_a_suspended_account_next_changes_when_it_becomes_bad_debt():
    s = standing([due(30 * DAY + 5 * HOUR, attempts=6)], at=T)
    assert (s.stage, s.bad_debt) == ("suspended", False)
    assert s.next_action_at == T - 30 * DAY - 5 * HOUR + 60 * DAY


def test_an_uncollectible_invoice_is_bad_debt_without_anything_past_due():
    s = standing([], uncollectible=True, at=T)
    assert (s.stage, s.bad_debt, s.delinquent) == ("none", True, False)
    assert s.next_action_at is None


def test_nothing_changes_after_bad_debt_at_sixty_days():
    assert standing([due(75 * DAY)], at=T).next_action_at is None


def test_an_invoice_falling_due_with_failed_attempts_is_the_next_action_before_a_threshold():
    """At T+1d the second invoice joins U with its failed attempt: grace becomes retrying."""
    s = standing([due(DAY), due(-DAY, attempts=1)], at=T)
    assert s.stage == "grace"
    assert s.next_action_at == T + DAY


def test_an_invoice_falling_due_that_changes_nothing_is_skipped():
    s = standing([due(5 * DAY, attempts=1), due(-DAY)], at=T)
    assert s.stage == "retrying"
    assert s.next_action_at == T - 5 * DAY + 14 * DAY


def test_an_open_invoice_without_a_due_date_never_falls_due():
    s = standing([Receivable(due_at=None, attempt_count=3)], at=T)
    assert (s.stage, s.next_action_at) == ("none", None)


@freeze_time("2026-03-04T00:00:00Z")
def test_standing_is_evaluated_now_when_no_instant_is_given():
    s = standing([due(timedelta(0))])  # fell due at T, three days before the frozen now
    assert (s.stage, s.days_overdue) == ("retrying", 3)
    assert s.next_action_at == T + 14 * DAY


@freeze_time("2026-03-03T23:59:59Z")
def test_a_second_before_the_threshold_now_is_still_grace():
    assert standing([due(timedelta(0))]).stage == "grace"


@pytest.mark.parametrize(
    ("closed", "stage", "status"),
    [(False, "none", "active"), (False, "final_notice", "active"), (False, "suspended", "suspended"),
     (True, "suspended", "closed"), (True, "none", "closed")],
)
def test_account_status(closed, stage, status):
    assert account_status(closed=closed, stage=stage) == status


def test_entitlements_follow_the_plan_when_active_the_free_plan_when_suspended_and_nothing_when_closed():
    pro, free = frozenset({"basic_reports", "sso"}), frozenset({"basic_reports"})
    enabled = {
        status: {f: entitlement_enabled(f, status=status, plan_features=pro, free_features=free)
                 for f in ("basic_reports", "sso", "audit_log")}
        for status in ("active", "suspended", "closed")
    }
    assert enabled["active"] == {"basic_reports": True, "sso": True, "audit_log": False}
    assert enabled["suspended"] == {"basic_reports": True, "sso": False, "audit_log": False}
    assert enabled["closed"] == {"basic_reports": False, "sso": False, "audit_log": False}
