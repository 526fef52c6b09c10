"""The drift walk (domain/drift.points_back) carries the fold, the corrected tables' rows and the
dunning history's stages forward along the account's instants instead of recomputing each from the
first event. At every instant its points (the rows, the true state, the corrections they call for)
and every drift it finds are exactly what the walk from scratch gives (tests/support/drift_oracle.py),
for accounts whose invoices, rows and Stripe objects change at any instants, ties included."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.diff import SECTIONS, corrections_for, read_by, sections_of, targets_for
from domain.drift import Point, drift_origins, points_back, recorded_rows, target_of
from domain.dunning import StageSince
from domain.events import AccountEvent
from domain.facts import AccountFacts
from domain.fold import Folding, fold
from domain.legacy_tables import COMPARED
from domain.rules import RULES_V1
from domain.state import TrueState, TrueStripeInvoice, TrueSubscription
from domain.truth import ALWAYS_READ, Along, decided_until, facts_read, read_state, true_state
from tests.support import drift_oracle
from tests.support.builders import (
    ACCOUNT,
    T0,
    Invoice,
    a_catalog,
    account_row,
    due_in,
    failed_charge,
    iso,
    legacy,
    now,
    past_due,
    stripe,
    stripe_customer,
    stripe_invoice,
    stripe_subscription,
)

HOUR = timedelta(hours=1)
STAGES = ("none", "grace", "retrying", "final_notice", "suspended")
COMPARED_TABLES = frozenset(spec.name for spec in COMPARED)

invoice_draws = st.tuples(st.floats(min_value=-40, max_value=40, allow_nan=False),
                          st.sampled_from(["open", "open", "paid", "uncollectible"]),
                          st.integers(0, 5), st.booleans())
writes = st.tuples(st.sampled_from(["dunning", "dunning_gone", "invoice_status", "invoice_gone", "stripe_paid",
                                    "subs_account", "subs_dunning", "account_status", "failed_charge",
                                    "stripe_customer", "stripe_subscription"]),
                   st.integers(min_value=-24 * 45, max_value=24 * 2).map(lambda h: h - h % 6),  # ties happen
                   st.integers(0, 11))
accounts = st.tuples(st.sampled_from(["active", "active", "closed"]), st.lists(invoice_draws, max_size=4),
                     st.lists(writes, max_size=10))


def an_invoice(n: int, days: float, status: str, attempts: int, stripe_decides: bool) -> Invoice:
    kw: dict[str, Any] = {"status": status, "attempts": attempts, "invoice_id": f"inv_000042_{n}",
                          "stripe_status": "open" if stripe_decides and status == "open" else None}
    return past_due(days=days, **kw) if days >= 0 else due_in(days=-days, **kw)


def a_write(kind: str, hours: int, choice: int, invoices: list[Invoice], n: int) -> AccountEvent | None:
    """One later change to the account's rows or Stripe objects, `hours` from now."""
    at, key = now() + hours * HOUR, {"account_id": ACCOUNT}
    stage = STAGES[choice % len(STAGES)]
    invoice = invoices[choice % len(invoices)] if invoices else None
    if kind == "dunning":
        return legacy("billing_prod", "dunning", key, {"account_id": ACCOUNT, "stage": stage, "stage_since": None,
                                                      "updated_at": iso(at)}, at=at)
    if kind == "dunning_gone":
        return legacy("billing_prod", "dunning", key, None, at=at)
    if kind == "subs_account":
        return legacy("subs", "subs_account", key, {"account_id": ACCOUNT, "bad_debt": bool(choice & 1),
                                                    "delinquent": bool(choice & 2), "updated_at": iso(at)}, at=at)
    if kind == "subs_dunning":
        return legacy("subs", "subs_dunning", key, {"account_id": ACCOUNT, "stage": stage, "attempt_count": choice % 4,
                                                    "next_action_at": None, "updated_at": iso(at)}, at=at)
    if kind == "account_status":
        return account_row(status="closed" if choice % 3 == 0 else "active", at=at)
    if kind == "stripe_customer":
        return stripe("customer", stripe_customer(f"cus_{choice % 2}", created=at), at=at, evt=f"evt_{n}_cus")
    if kind == "stripe_subscription":
        obj = stripe_subscription(f"sub_{choice % 2}", ("active", "past_due", "canceled")[choice % 3], created=at,
                                  period_end=at + 30 * 24 * HOUR)
        return stripe("subscription", obj, at=at, evt=f"evt_{n}_sub")
    if invoice is None:
        return None
    if kind == "stripe_paid":
        if invoice.stripe_status is None:
            return None
        obj = stripe_invoice(f"in_{invoice.invoice_id}", "paid", attempts=invoice.attempts, amount_paid=4900)
        return stripe("invoice", obj, at=at, evt=f"evt_{n}_paid")
    if kind == "failed_charge":
        return failed_charge(invoice.invoice_id, 10 + n, at=at)
    row_key = {"invoice_id": invoice.invoice_id}
    if kind == "invoice_gone":
        return legacy("billing_prod", "invoices", row_key, None, at=at)
    row = invoice.events()[0].row or {}
    return legacy("billing_prod", "invoices", row_key,
                  {**row, "status": ("open", "paid", "void")[choice % 3], "updated_at": iso(at)}, at=at)


def account_events(account: tuple[str, list[Any], list[Any]]) -> list[AccountEvent]:
    """The account's events, built under the frozen clock (T0 is its T)."""
    status, drawn, later = account
    with freeze_time(T0):
        invoices = [an_invoice(n, *d) for n, d in enumerate(drawn)]
        events: list[AccountEvent] = [account_row(status=status)]
        for invoice in invoices:
            events += invoice.events()
        return events + [e for n, w in enumerate(later) if (e := a_write(*w, invoices, n)) is not None]


def as_read(segments: Iterable[list[Point]], names: Collection[str]) -> list[list[tuple[Any, ...]]]:
    """Each point with only the fields `names` of its state (the walk decides only what the diff reads)."""
    return [[(p.at, p.crossing, p.rows, p.drifting, {name: getattr(p.state, name) for name in names})
             for p in segment] for segment in segments]


@settings(max_examples=150, deadline=None)
@given(accounts, st.sets(st.sampled_from(sorted(COMPARED_TABLES)), min_size=1))
def test_the_walk_says_at_every_instant_what_the_walk_from_scratch_says(account, tables):
    """Its instants, rows and drifting targets, and every field of the state that the diff of the
    corrected tables reads (and truth.ALWAYS_READ), the only ones it decides."""
    events, at, catalog = account_events(account), T0, a_catalog()
    folded = sorted((e for e in events if e.source_time <= at), key=lambda e: (e.source_time, e.originator_version))
    names = {*ALWAYS_READ, *(name for section in sections_of(tables) for name in section.reads)}
    assert as_read(points_back(folded, tables, catalog, RULES_V1, at), names) == \
        as_read(drift_oracle.points_back(folded, tables, catalog, RULES_V1, at), names)


@settings(max_examples=150, deadline=None)
@given(accounts, st.sets(st.sampled_from(sorted(TrueState.model_fields)), max_size=6), st.integers(0, 40))
def test_the_fields_read_at_an_instant_are_those_of_the_whole_true_state(account, names, instant):
    """read_state, what the walk decides at each instant, and its decided_until, against the whole
    state (explain off) at an event instant or at a crossing after the last one."""
    events, catalog = account_events(account), a_catalog()
    instants = sorted({e.source_time for e in events})
    at = instants[instant] if instant < len(instants) else instants[-1] + (instant - len(instants)) * 6 * HOUR
    facts = fold(events, as_of=at, legacy=False)
    along = Along(StageSince(fold(events, as_of=max(at, T0), legacy=False).dunning_history, RULES_V1))
    whole = true_state(facts, catalog, RULES_V1, at, explain=False)
    read = Folding(events, legacy=False).facts_at(at, only=facts_read(names))  # what it reads of the facts alone
    state, until = read_state(read, catalog, RULES_V1, at, names, along=along)
    assert {name: getattr(state, name) for name in {*names, *ALWAYS_READ}} == \
        {name: getattr(whole, name) for name in {*names, *ALWAYS_READ}}
    assert until == decided_until(whole)


@settings(max_examples=150, deadline=None)
@given(accounts)
def test_every_correction_drifts_from_where_the_walk_from_scratch_says(account):
    events, at, catalog = account_events(account), T0, a_catalog()
    facts = fold(events, as_of=at)
    corrections = corrections_for(true_state(facts, catalog, RULES_V1, at, explain=False), recorded_rows(facts))
    assert drift_origins(corrections, events, catalog, RULES_V1, at) == \
        drift_oracle.drift_origins(corrections, events, catalog, RULES_V1, at)


@pytest.mark.parametrize("legacy", [True, False])
@settings(max_examples=100, deadline=None)
@given(account=accounts)
def test_folding_forward_gives_at_every_instant_what_a_fold_at_it_gives(legacy, account):
    """Folding resolves each instant from what it resolved before (the invoices not touched since,
    the Stripe objects' facts, the dunning history's changes)."""
    events = account_events(account)
    folding = Folding(events, legacy=legacy)
    for instant in sorted({e.source_time for e in events}):
        assert folding.facts_at(instant) == fold(events, as_of=instant, legacy=legacy)


@settings(max_examples=100, deadline=None)
@given(account=accounts, only=st.sets(st.sampled_from(sorted(AccountFacts.model_fields))))
def test_facts_made_for_some_fields_hold_those_of_the_whole_facts(account, only):
    """What the walk folds at each instant (Folding.facts_at `only`): each field asked as the whole has it."""
    events = account_events(account)
    folding = Folding(events, legacy=False)
    for instant in sorted({e.source_time for e in events}):
        some, whole = folding.facts_at(instant, only=only), fold(events, as_of=instant, legacy=False)
        assert {name: getattr(some, name) for name in only} == {name: getattr(whole, name) for name in only}


@settings(max_examples=100, deadline=None)
@given(account=accounts, cut=st.integers(0, 12))
def test_a_fold_forked_part_way_goes_on_as_the_fold_it_was_forked_from(account, cut):
    """The walk forks one fold where each of its chunks starts (Folding.fork): from there the fork
    and the fold are independent, and each gives at every later instant what a fold at it gives."""
    events = account_events(account)
    instants = sorted({e.source_time for e in events})
    folding = Folding(events, legacy=False)
    before = instants[:cut][-1:]
    for instant in before:
        folding.advance(instant)
    fork = folding.fork()
    for instant in instants[cut:]:
        assert fork.facts_at(instant) == fold(events, as_of=instant, legacy=False)
    for instant in instants[cut:]:
        assert folding.facts_at(instant) == fold(events, as_of=instant, legacy=False)


# A value for each field of the true state that no generated account's state has (status: the
# other of active and suspended, so that a new entitlement row's source moves too).
OTHER_VALUES = {
    "as_of": T0 + HOUR, "rules_version": "v9", "plan": "nowhere", "status": "elsewhere", "stage": "limbo",
    "stage_since": T0 - 9_999 * HOUR, "days_overdue": 999, "failed_attempts": 99, "bad_debt": None,
    "delinquent": None, "next_action_at": T0 + 9_999 * HOUR, "past_due_invoices": ("inv_x",),
    "entitlements": {"sso": True, "nowhere": True}, "manual_features": ("sso",), "invoices": {},
    "stripe_invoices": {"in_x": TrueStripeInvoice(stripe_invoice_id="in_x", invoice_id=None, status="open",
                                                  amount_due=1, amount_paid=0, amount_remaining=1, attempt_count=0)},
    "stripe_customer_id": "cus_x", "subscription": TrueSubscription(subscription_id="sub_x", status="active",
                                                                   current_period_end=None),
    "because": {},
}


@settings(max_examples=100, deadline=None)
@given(account=accounts)
def test_each_part_of_the_diff_reads_of_the_state_only_the_fields_it_names(account):
    """The walk runs a part of the diff again only when the rows or what it reads (`read_by`) moved:
    a state changed in every other field calls for the same corrections, and targets, of its tables."""
    assert set(OTHER_VALUES) | {"account_exists", "account_id"} == set(TrueState.model_fields)
    events, at, catalog = account_events(account), T0, a_catalog()
    facts = fold(events, as_of=at)
    state, rows = true_state(facts, catalog, RULES_V1, at), recorded_rows(facts)
    others = {**OTHER_VALUES, "status": "active" if state.status == "suspended" else "suspended"}
    for section in SECTIONS:
        other = state.model_copy(update={name: value for name, value in others.items() if name not in section.reads})
        assert read_by(section, other) == read_by(section, state)
        assert corrections_for(other, rows, only=section.tables) == corrections_for(state, rows, only=section.tables)
        assert targets_for(other, rows, only=section.tables) == targets_for(state, rows, only=section.tables) == \
            {target_of(c) for c in corrections_for(state, rows, only=section.tables)}


@settings(max_examples=150, deadline=None)
@given(account=accounts, given_first=st.integers(0, 40), cut=st.integers(0, 40))
def test_a_walk_that_starts_from_a_fold_part_way_says_what_the_walk_from_scratch_says(account, given_first, cut):
    """A follower's walk starts from its fold as of its last step (drift_origins `start`): the fold
    of the stream's first events as far as an instant, carried on over the rest where it can be."""
    events, at, catalog = account_events(account), T0, a_catalog()
    events = [e.model_copy(update={"originator_version": v}) for v, e in enumerate(events, 1)]
    instants = sorted({e.source_time for e in events})
    start = Folding(events[:given_first], legacy=False)
    if instants[:cut]:
        start.advance(instants[:cut][-1])
    if not start.extend(events[given_first:]):
        start = Folding(events, legacy=False)
    facts = fold(events, as_of=at)
    corrections = corrections_for(true_state(facts, catalog, RULES_V1, at, explain=False), recorded_rows(facts))
    assert drift_origins(corrections, events, catalog, RULES_V1, at, start=start) == \
        drift_oracle.drift_origins(corrections, events, catalog, RULES_V1, at)
