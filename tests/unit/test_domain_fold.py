"""The fold: which events count, in which order, and how Stripe observations of one object compete."""

from __future__ import annotations

import random

import pytest
from freezegun import freeze_time

from domain.catalog import fold_catalog
from domain.events import CATALOG_STREAM, AccountEvent
from domain.fold import Folding, UnknownEvent, fold
from tests.support.builders import (
    ACCOUNT,
    DAY,
    SECOND,
    T0,
    a_catalog,
    account_row,
    an_account,
    due_in,
    iso,
    legacy,
    now,
    paid,
    past_due,
    state_at,
    state_now,
    stripe,
    stripe_invoice,
    stripe_subscription,
)


def stripe_late_invoice(days: float = 5):
    """A past-due invoice that Stripe decides (billing says open too)."""
    return past_due(days=days, stripe_status="open")


@freeze_time(T0)
def test_the_same_events_in_any_order_give_the_same_facts_and_state():
    events = an_account(invoices=(past_due(days=16, attempts=2), stripe_late_invoice(), due_in(days=3)),
                        manual=("sso",))
    expected = state_now(events).model_dump()
    shuffler = random.Random(7)
    for _ in range(5):
        shuffled = events[:]
        shuffler.shuffle(shuffled)
        assert state_now(shuffled).model_dump() == expected
        assert fold(shuffled, as_of=now()) == fold(events, as_of=now())


@freeze_time(T0)
def test_as_of_excludes_events_after_it():
    late = past_due(days=10, attempts=1)
    payment_at = now() - 2 * DAY
    paid_row = {"invoice_id": late.invoice_id, "account_id": ACCOUNT, "stripe_invoice_id": None, "status": "paid",
                "currency": "usd", "amount_due": 4900, "amount_paid": 4900, "due_at": iso(late.due_at)}
    events = an_account(invoice=late, extra=(
        legacy("billing_prod", "invoices", {"invoice_id": late.invoice_id}, paid_row, at=payment_at),))
    assert state_at(payment_at - SECOND, events).stage == "retrying"
    assert state_at(payment_at, events).stage == "none"
    assert fold(events, as_of=payment_at - SECOND).events_folded == len(events) - 1


def test_an_event_class_the_fold_does_not_know_fails_loudly():
    stray = AccountEvent(originator_id=ACCOUNT, originator_version=1, store="x", table="y", key={}, position="p",
                         source_time=T0, recorded_at=T0)
    with pytest.raises(UnknownEvent, match="AccountEvent"):
        fold([stray], as_of=T0)


def test_as_of_must_say_its_offset():
    with pytest.raises(ValueError, match="aware"):
        fold([], as_of=T0.replace(tzinfo=None))


@freeze_time(T0)
def test_a_legacy_row_is_its_latest_observation_and_a_deleted_row_is_gone():
    first = account_row(plan="team", at=now() - 3 * DAY)
    second = account_row(plan="pro", at=now() - 2 * DAY)
    entitlement = legacy("cf_prod", "entitlements", {"account_id": ACCOUNT, "feature": "api"},
                         {"account_id": ACCOUNT, "feature": "api", "enabled": True, "source": "plan"}, at=now() - DAY)
    removed = legacy("cf_prod", "entitlements", {"account_id": ACCOUNT, "feature": "api"}, None, at=now())
    facts = fold([second, entitlement, first, removed], as_of=now())
    assert facts.row("cf_prod", "accounts", {"account_id": ACCOUNT}).row["plan"] == "pro"
    assert facts.account.plan == "pro"
    assert facts.rows("cf_prod", "entitlements") == []
    assert fold([entitlement, first], as_of=now()).rows("cf_prod", "entitlements")[0].key["feature"] == "api"


def invoice_events(status_by_evt, *, billing_status="open"):
    """A billing invoice pointing at Stripe invoice in_1, and Stripe events (evt, created, status, attempts)."""
    due = now() - 5 * DAY
    row = {"invoice_id": "inv_1", "account_id": ACCOUNT, "stripe_invoice_id": "in_1", "status": billing_status,
           "currency": "usd", "amount_due": 4900, "amount_paid": 0, "due_at": iso(due)}
    events = [account_row(), legacy("billing_prod", "invoices", {"invoice_id": "inv_1"}, row, at=due - 7 * DAY)]
    for evt, created, status, attempts in status_by_evt:
        paid_amount = 4900 if status == "paid" else 0
        events.append(stripe("invoice", stripe_invoice("in_1", status, attempts=attempts, amount_paid=paid_amount),
                             at=created, evt=evt))
    return events


@freeze_time(T0)
@pytest.mark.parametrize("order", ["paid first", "open first"])
def test_between_stripe_events_of_the_same_second_the_status_further_along_wins(order):
    same_second = now() - DAY
    pair = [("evt_paid", same_second, "paid", 1), ("evt_open", same_second, "open", 1)]
    events = invoice_events(pair if order == "paid first" else pair[::-1])
    state = state_now(events)
    assert state.invoices["inv_1"].status == "paid"
    assert state.stage == "none"


@freeze_time(T0)
def test_between_stripe_events_the_greatest_created_wins_whatever_arrives_last():
    """The older event (paid) arrives last; the newer one (open, 2 attempts) still decides."""
    events = invoice_events([("evt_late", now() - DAY, "open", 2), ("evt_early", now() - 2 * DAY, "paid", 1)])
    assert state_now(events).invoices["inv_1"].status == "open"
    assert state_now(events).invoices["inv_1"].attempt_count == 2


@freeze_time(T0)
def test_between_same_second_events_with_the_same_status_more_attempts_win():
    events = invoice_events([("evt_b", now() - DAY, "open", 3), ("evt_a", now() - DAY, "open", 2)])
    assert state_now(events).failed_attempts == 3


@freeze_time(T0)
def test_a_subscription_event_tie_goes_to_the_status_further_along():
    created = now() - 40 * DAY
    at = now() - DAY
    active = stripe_subscription("sub_1", "active", created=created, period_end=now() + 10 * DAY)
    past_due_sub = stripe_subscription("sub_1", "past_due", created=created, period_end=now() + 10 * DAY)
    events = an_account(extra=(stripe("subscription", past_due_sub, at=at, evt="evt_s2"),
                               stripe("subscription", active, at=at, evt="evt_s1")))
    assert state_now(events).subscription.status == "past_due"


@freeze_time(T0)
def test_an_event_delivered_twice_counts_once():
    """The same evt_ id with a different body (a hand-edited fixture, or a replay): the first one folded counts."""
    events = invoice_events([("evt_1", now() - DAY, "open", 1), ("evt_1", now() - DAY, "paid", 1)])
    facts = fold(events, as_of=now())
    assert facts.invoices["inv_1"].status == "open"
    assert facts.events_folded == len(events)


@freeze_time(T0)
def test_a_list_read_counts_as_an_observation_at_its_latest_timestamp():
    events = invoice_events([("evt_1", now() - 3 * DAY, "open", 1)])
    listed_paid = stripe("invoice", stripe_invoice("in_1", "paid", attempts=1, amount_paid=4900), at=now() - 2 * DAY)
    stale_listing = stripe("invoice", stripe_invoice("in_1", "draft"), at=now() - 4 * DAY)
    state = state_now(events + [listed_paid, stale_listing])
    assert state.invoices["inv_1"].status == "paid"
    assert state.invoices["inv_1"].amount_paid == 4900


@freeze_time(T0)
def test_the_catalog_folds_product_config_rows_and_forgets_deleted_ones():
    catalog = a_catalog({"free": ("docs",), "pro": ("api", "docs")})
    assert catalog.plans == {"free": ("docs",), "pro": ("api", "docs")}
    assert catalog.features == ("api", "docs")
    gone = legacy("cf_prod", "product_config", {"plan": "pro", "feature": "api"}, None, at=now(),
                  account=CATALOG_STREAM)
    row = legacy("cf_prod", "product_config", {"plan": "pro", "feature": "api"}, {"plan": "pro", "feature": "api"},
                 at=now() - DAY, account=CATALOG_STREAM)
    assert fold_catalog([gone, row]).plans == {}


@freeze_time(T0)
def test_facts_and_state_are_plain_json():
    events = an_account(invoices=(past_due(days=4, attempts=1), stripe_late_invoice(), paid()))
    facts = fold(events, as_of=now())
    assert type(facts).model_validate_json(facts.model_dump_json()) == facts
    state = state_now(events)
    assert '"stage":"retrying"' in state.model_dump_json()


@freeze_time(T0)
@pytest.mark.parametrize("legacy", [True, False])
def test_folding_forward_gives_at_each_instant_what_a_fold_at_it_gives(legacy):
    events = an_account(invoices=(past_due(days=16, attempts=2), stripe_late_invoice(), due_in(days=3), paid()),
                        manual=("sso",))
    instants = sorted({e.source_time for e in events} | {now()})
    folding = Folding(events, legacy=legacy)
    for instant in [instants[0] - DAY, *instants]:
        assert folding.facts_at(instant) == fold(events, as_of=instant, legacy=legacy)


@freeze_time(T0)
def test_folding_goes_back_only_as_far_as_the_last_event_it_evolved():
    events = an_account(invoice=past_due(days=3))
    last = max(e.source_time for e in events)
    folding = Folding(events, legacy=False)
    folding.facts_at(now())
    assert folding.facts_at(last) == fold(events, as_of=last, legacy=False)  # nothing evolved after it
    with pytest.raises(ValueError, match="goes forward"):
        folding.facts_at(last - SECOND)


@freeze_time(T0)
@pytest.mark.parametrize("legacy", [True, False])
def test_a_folding_extended_by_later_versions_goes_on_as_a_fold_of_the_whole_stream(legacy):
    events = sorted(an_account(invoices=(past_due(days=16, attempts=2), stripe_late_invoice(), due_in(days=3),
                                         paid()), manual=("sso",)), key=lambda e: e.originator_version)
    instants = sorted({e.source_time for e in events} | {now()})
    for split in range(len(events) + 1):
        for before, after in zip(instants, instants[1:], strict=False):
            folding = Folding(events[:split], legacy=legacy)
            folding.facts_at(before)
            if folding.extend(events[split:]):
                assert folding.facts_at(after) == fold(events, as_of=after, legacy=legacy)
            else:  # an added event sorts before one evolved: nothing changed
                assert folding.facts_at(after) == fold(events[:split], as_of=after, legacy=legacy)


@freeze_time(T0)
def test_a_folding_is_not_extended_by_an_event_earlier_than_one_it_evolved():
    first, *rest = sorted(an_account(invoice=past_due(days=3)), key=lambda e: e.source_time)
    folding = Folding(rest, legacy=True)
    folding.facts_at(now())
    assert first.source_time < min(e.source_time for e in rest)
    assert not folding.extend([first.model_copy(update={"originator_version": 999})])
    assert folding.facts_at(now()) == fold(rest, as_of=now())
