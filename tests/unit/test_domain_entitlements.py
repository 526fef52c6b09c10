"""Which non-manual features an account has: its plan when active, the free plan when suspended, none when closed."""

from __future__ import annotations

from freezegun import freeze_time

from tests.support.builders import T0, an_account, past_due, state_now


@freeze_time(T0)
def test_an_active_account_has_exactly_the_features_of_its_plan():
    state = state_now(an_account(plan="team"))
    assert state.entitlements == {"api": True, "docs": True, "sso": False}


@freeze_time(T0)
def test_a_suspended_account_has_exactly_the_features_of_the_free_plan():
    state = state_now(an_account(plan="pro", invoice=past_due(days=21)))
    assert state.status == "suspended"
    assert state.entitlements == {"api": False, "docs": True, "sso": False}
    assert "plan 'free'" in state.because["entitlements.docs"].rule


@freeze_time(T0)
def test_a_closed_account_has_no_features():
    state = state_now(an_account(plan="pro", status="closed"))
    assert state.entitlements == {"api": False, "docs": False, "sso": False}


@freeze_time(T0)
def test_features_with_a_manual_row_are_left_out():
    state = state_now(an_account(plan="team", manual=("sso", "docs"), invoice=past_due(days=30)))
    assert state.entitlements == {"api": False}
    assert state.manual_features == ("docs", "sso")


@freeze_time(T0)
def test_a_plan_the_catalog_does_not_know_includes_nothing():
    assert set(state_now(an_account(plan="legacy-gold")).entitlements.values()) == {False}
