"""Each row of the authority table of rules-v1 §1: which source decides which fact."""

from __future__ import annotations

from freezegun import freeze_time

from domain.fold import fold
from tests.support.builders import (
    ACCOUNT,
    DAY,
    T0,
    Invoice,
    account_row,
    an_account,
    failed_charge,
    iso,
    legacy,
    now,
    past_due,
    state_now,
    stripe,
    stripe_customer,
    stripe_invoice,
    stripe_subscription,
)


@freeze_time(T0)
def test_billing_says_paid_but_stripe_says_open_so_the_invoice_is_open():
    late = past_due(days=4, attempts=2, stripe_status="open", billing_status="paid")
    state = state_now(an_account(invoice=late))
    assert state.invoices[late.invoice_id].status == "open"
    assert state.stage == "retrying"
    assert "Stripe invoice" in state.because[f"invoices.{late.invoice_id}.status"].rule


@freeze_time(T0)
def test_stripe_decides_amount_paid_and_attempt_count_even_when_billing_has_charges():
    late = past_due(days=4, attempts=1, stripe_status="open")
    charges = tuple(failed_charge(late.invoice_id, n, at=now() - DAY) for n in (1, 2, 3))
    state = state_now(an_account(invoice=late, extra=charges))
    assert state.invoices[late.invoice_id].attempt_count == 1


@freeze_time(T0)
def test_an_invoice_whose_stripe_id_stripe_does_not_know_keeps_billing_status_and_counts_charges():
    late = past_due(days=4)
    row = {"invoice_id": late.invoice_id, "account_id": ACCOUNT, "stripe_invoice_id": "in_unknown",
           "status": "open", "currency": "usd", "amount_due": 4900, "amount_paid": 0, "due_at": iso(late.due_at)}
    events = an_account(extra=(legacy("billing_prod", "invoices", {"invoice_id": late.invoice_id}, row,
                                      at=now() - 8 * DAY),
                               failed_charge(late.invoice_id, 1, at=now() - 2 * DAY)))
    invoice = state_now(events).invoices[late.invoice_id]
    assert (invoice.status, invoice.attempt_count) == ("open", 1)


@freeze_time(T0)
def test_an_invoice_without_stripe_id_takes_its_attempt_count_from_its_charges():
    late = past_due(days=1, attempts=3)
    state = state_now(an_account(invoice=late))
    assert state.invoices[late.invoice_id].attempt_count == 3
    assert len(state.because[f"invoices.{late.invoice_id}.attempt_count"].refs) == 3


@freeze_time(T0)
def test_a_charge_moved_to_another_invoice_or_deleted_stops_counting():
    late = past_due(days=1, attempts=2)
    moved = failed_charge("inv_other", 1, at=now() - DAY)
    moved = moved.model_copy(update={"key": {"charge_id": f"ch_{late.invoice_id}_1"},
                                     "row": {**moved.row, "charge_id": f"ch_{late.invoice_id}_1"}})
    deleted = legacy("billing_prod", "charges", {"charge_id": f"ch_{late.invoice_id}_2"}, None, at=now() - DAY)
    assert state_now(an_account(invoice=late, extra=(moved,))).failed_attempts == 1
    assert state_now(an_account(invoice=late, extra=(moved, deleted))).failed_attempts == 0


@freeze_time(T0)
def test_amounts_currency_and_due_date_come_from_billing_and_amount_remaining_follows():
    late = past_due(days=1, stripe_status="open", amount_due=10_000)
    partly_paid = stripe_invoice(f"in_{late.invoice_id}", "open", amount_due=99_999, amount_paid=2_500)
    state = state_now(an_account(invoice=late, extra=(stripe("invoice", partly_paid, at=now() - DAY, evt="evt_p"),)))
    invoice = state.invoices[late.invoice_id]
    assert (invoice.amount_due, invoice.amount_paid, invoice.amount_remaining) == (10_000, 2_500, 7_500)
    assert (invoice.currency, invoice.due_at) == ("usd", late.due_at)
    assert state.stripe_invoices[f"in_{late.invoice_id}"].amount_remaining == 7_500


@freeze_time(T0)
def test_every_stripe_invoice_of_the_stream_is_in_the_state_even_without_a_billing_row():
    orphan = stripe_invoice("in_orphan", "paid", attempts=2, amount_due=700, amount_paid=700, basil=False)
    state = state_now(an_account(extra=(stripe("invoice", orphan, at=now() - DAY, evt="evt_o"),)))
    assert state.stripe_invoices["in_orphan"].model_dump() == {
        "stripe_invoice_id": "in_orphan", "invoice_id": None, "status": "paid", "amount_due": 700,
        "amount_paid": 700, "amount_remaining": 0, "attempt_count": 2}
    assert state.invoices == {}


@freeze_time(T0)
def test_the_stripe_invoice_knows_its_subscription_in_both_api_shapes():
    basil = stripe("invoice", stripe_invoice("in_b", subscription="sub_new"), at=now(), evt="evt_b")
    older = stripe("invoice", stripe_invoice("in_o", subscription="sub_old", basil=False), at=now(), evt="evt_o")
    facts = fold([basil, older], as_of=now())
    assert facts.stripe_invoices["in_b"].subscription == "sub_new"
    assert facts.stripe_invoices["in_o"].subscription == "sub_old"


@freeze_time(T0)
def test_the_stripe_customer_is_the_earliest_created_one_that_is_not_deleted():
    earliest = stripe_customer("cus_first", created=now() - 300 * DAY)
    second = stripe_customer("cus_second", created=now() - 200 * DAY)
    third = stripe_customer("cus_third", created=now() - 100 * DAY)
    someone_else = stripe_customer("cus_other", created=now() - 400 * DAY, account="acc_999999")
    events = an_account(extra=(
        stripe("customer", third, at=now() - 100 * DAY, evt="evt_c3"),
        stripe("customer", second, at=now() - 200 * DAY, evt="evt_c2"),
        stripe("customer", earliest, at=now() - 300 * DAY, evt="evt_c1"),
        stripe("customer", someone_else, at=now() - 300 * DAY, evt="evt_c0"),
    ))
    assert state_now(events).stripe_customer_id == "cus_first"
    deletion = stripe("customer", {"id": "cus_first", "object": "customer", "deleted": True}, at=now() - DAY,
                      evt="evt_del", deleted=True)
    assert state_now(events + [deletion]).stripe_customer_id == "cus_second"


@freeze_time(T0)
def test_the_subscription_is_the_latest_created_one_in_either_api_shape():
    old = stripe_subscription("sub_old", "canceled", created=now() - 300 * DAY, period_end=now() - 200 * DAY)
    new = stripe_subscription("sub_new", "past_due", created=now() - 30 * DAY, period_end=now() + 5 * DAY,
                              basil=False)
    events = an_account(extra=(stripe("subscription", new, at=now() - 2 * DAY, evt="evt_new"),
                               stripe("subscription", old, at=now() - DAY, evt="evt_old")))
    subscription = state_now(events).subscription
    assert (subscription.subscription_id, subscription.status) == ("sub_new", "past_due")
    assert subscription.current_period_end == now() + 5 * DAY
    basil = stripe_subscription("sub_b", "active", created=now() - 10 * DAY, period_end=now() + 20 * DAY)
    subscription = state_now(events + [stripe("subscription", basil, at=now() - DAY, evt="evt_b")]).subscription
    assert (subscription.subscription_id, subscription.current_period_end) == ("sub_b", now() + 20 * DAY)


@freeze_time(T0)
def test_subs_observations_are_kept_but_never_trusted():
    late = past_due(days=5, attempts=1)
    at = now() - DAY
    subs = (
        legacy("subs", "subs_invoice", {"stripe_invoice_id": "in_x"},
               {"stripe_invoice_id": "in_x", "account_id": ACCOUNT, "status": "paid", "amount_remaining": 0,
                "attempt_count": 0}, at=at),
        legacy("subs", "subs_dunning", {"account_id": ACCOUNT},
               {"account_id": ACCOUNT, "stage": "suspended", "attempt_count": 9, "next_action_at": None}, at=at),
        legacy("subs", "subs_customer", {"id": 7}, {"id": 7, "account_id": ACCOUNT, "stripe_customer_id": "cus_dup",
                                                    "source": "setup"}, at=at),
        legacy("subs", "subs_subscription", {"account_id": ACCOUNT},
               {"account_id": ACCOUNT, "stripe_subscription_id": "sub_x", "status": "active"}, at=at),
    )
    trusted = state_now(an_account(invoice=late))
    observed = state_now(an_account(invoice=late, extra=subs))
    assert observed.model_dump(exclude={"because"}) == trusted.model_dump(exclude={"because"})
    assert (observed.stage, observed.stripe_customer_id, observed.subscription) == ("retrying", None, None)
    facts = fold(an_account(invoice=late, extra=subs), as_of=now())
    assert facts.row("subs", "subs_customer", {"id": 7}).row["stripe_customer_id"] == "cus_dup"


@freeze_time(T0)
def test_the_plan_and_closure_come_from_cf_prod_accounts():
    events = [account_row(plan="team", at=now() - 10 * DAY), account_row(plan="pro", status="closed", at=now() - DAY)]
    state = state_now(events)
    assert (state.plan, state.status, state.account_exists) == ("pro", "closed", True)


@freeze_time(T0)
def test_an_account_missing_from_cf_prod_has_nothing_enabled():
    state = state_now(Invoice(due_at=now() - DAY).events())
    assert state.account_exists is False
    assert set(state.entitlements.values()) == {False}
