"""From corrections to bookkeeping, causes and outgoing domain events (pure), and the blast-radius guard."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.diff import Correction
from domain.outgoing import bookkeeping, causes, event_body, event_id, meanings
from domain.state import Because, TrueInvoice, TrueState
from projections.apply.protocol import ApplyOptions, ApplyRefused, check_blast_radius

T = datetime(2026, 3, 1, tzinfo=UTC)
ACC = "acc_000042"
SINCE = datetime(2026, 2, 18, 8, 27, tzinfo=UTC)


def a_state(**overrides) -> TrueState:
    """acc_000042 retrying since 2026-02-18 on its Stripe invoice in_42 (billing inv_42)."""
    values = dict(
        account_id=ACC, as_of=T, rules_version="v1", account_exists=True, plan="pro", status="active",
        stage="retrying", stage_since=SINCE, days_overdue=5, failed_attempts=2, bad_debt=False, delinquent=True,
        next_action_at=None, past_due_invoices=("inv_42",), entitlements={"api": True}, manual_features=(),
        invoices={"inv_42": TrueInvoice(invoice_id="inv_42", stripe_invoice_id="in_42", status="open", currency="usd",
                                        amount_due=2900, amount_paid=0, amount_remaining=2900, attempt_count=2,
                                        due_at=T)},
        stripe_invoices={}, stripe_customer_id="cus_42", subscription=None,
        because={"stage": Because(rule="retrying", refs=("billing_prod.invoices[inv_42]@1", "evt_failed")),
                 "stage_since": Because(rule="since", refs=("evt_failed",)),
                 "failed_attempts": Because(rule="2", refs=("evt_failed",)),
                 "bad_debt": Because(rule="not bad debt"),
                 "status": Because(rule="active", refs=("cf_prod.accounts[acc_000042]@1",)),
                 "entitlements.api": Because(rule="plan", refs=("cf_prod.accounts[acc_000042]@1",)),
                 "invoices.inv_42.status": Because(rule="stripe", refs=("evt_failed",))},
    )
    values.update(overrides)
    return TrueState(**values)


def update(table, key, column, from_, to) -> Correction:
    return Correction(account_id=ACC, table=table, op="update", key=key, column=column, from_=from_, to=to)


def insert(table, key, row) -> Correction:
    return Correction(account_id=ACC, table=table, op="insert", key=key, column=None, from_=None, to=row)


BILLING_STAGE = update("billing_prod.dunning", {"account_id": ACC}, "stage", "none", "retrying")
SUBS_STAGE = update("subs.subs_dunning", {"account_id": ACC}, "stage", "grace", "retrying")
SUBS_ATTEMPTS = update("subs.subs_dunning", {"account_id": ACC}, "attempt_count", 1, 2)
ENTITLEMENT = update("cf_prod.entitlements", {"account_id": ACC, "feature": "api"}, "enabled", False, True)


def summary(found):
    return [(m.type, m.subject, m.covers) for m in found]


def test_a_stage_corrected_in_both_stores_is_one_dunning_stage_changed_event():
    assert summary(meanings([BILLING_STAGE, SUBS_ATTEMPTS, SUBS_STAGE], a_state())) == [
        ("account.dunning_stage_changed", "", (0, 1, 2))]


def test_attempts_or_next_action_alone_is_a_schedule_correction_not_a_stage_change():
    none_row = insert("subs.subs_dunning", {"account_id": ACC},
                      {"account_id": ACC, "stage": "none", "attempt_count": 0, "next_action_at": "2026-03-05T00:00:00+00:00"})
    assert summary(meanings([SUBS_ATTEMPTS], a_state()))[0][0] == "account.dunning_schedule_corrected"
    assert summary(meanings([none_row], a_state()))[0][0] == "account.dunning_schedule_corrected"


def test_an_invoice_is_one_event_across_billing_and_subs_and_two_invoices_are_two():
    billing = update("billing_prod.invoices", {"invoice_id": "inv_42"}, "status", "open", "paid")
    cached = update("subs.subs_invoice", {"stripe_invoice_id": "in_42"}, "status", "open", "paid")
    other = update("subs.subs_invoice", {"stripe_invoice_id": "in_43"}, "attempt_count", 0, 1)
    assert summary(meanings([billing, cached, other], a_state())) == [
        ("account.invoice_state_corrected", "in_42", (0, 1)), ("account.invoice_state_corrected", "in_43", (2,))]


def test_each_kind_of_change_has_its_event_type():
    found = meanings([
        update("cf_prod.accounts", {"account_id": ACC}, "status", "suspended", "active"), ENTITLEMENT,
        update("cf_prod.entitlements", {"account_id": ACC, "feature": "sso"}, "enabled", True, False),
        update("subs.subs_account", {"account_id": ACC}, "delinquent", False, True),
        update("subs.subs_customer", {"id": 7}, "stripe_customer_id", "cus_old", "cus_42"),
        Correction(account_id=ACC, table="subs.subs_customer", op="delete", key={"id": 8}, column=None,
                   from_={"id": 8}, to=None),
        update("subs.subs_subscription", {"account_id": ACC}, "status", "past_due", "active"),
    ], a_state())
    assert [(m.type, len(m.covers)) for m in found] == [
        ("account.customer_mapping_corrected", 2), ("account.entitlements_changed", 2), ("account.flags_changed", 1),
        ("account.status_changed", 1), ("account.subscription_corrected", 1)]


def test_the_event_id_is_deterministic_per_run_and_content():
    [meaning] = meanings([BILLING_STAGE], a_state())
    first = event_id(ACC, meaning, "v1", "run-1", [BILLING_STAGE])
    assert first == event_id(ACC, meaning, "v1", "run-1", [BILLING_STAGE])
    assert first != event_id(ACC, meaning, "v1", "run-2", [BILLING_STAGE])
    assert first != event_id(ACC, meaning, "v2", "run-1", [BILLING_STAGE])
    assert first != event_id(ACC, meaning, "v1", "run-1", [SUBS_STAGE])


def test_the_projector_sets_stage_since_with_a_dunning_stage_and_the_source_with_an_entitlement():
    assert bookkeeping(BILLING_STAGE, a_state()) == {"stage_since": "2026-02-18T08:27:00+00:00"}
    assert bookkeeping(ENTITLEMENT, a_state()) == {"source": "plan"}
    assert bookkeeping(ENTITLEMENT, a_state(status="suspended")) == {"source": "dunning"}
    assert bookkeeping(SUBS_STAGE, a_state()) == {}


def test_causes_are_the_events_behind_the_written_column():
    assert causes(BILLING_STAGE, a_state()) == ("billing_prod.invoices[inv_42]@1", "evt_failed")
    assert causes(SUBS_ATTEMPTS, a_state()) == ("evt_failed",)
    assert causes(update("billing_prod.invoices", {"invoice_id": "inv_42"}, "status", "paid", "open"),
                  a_state()) == ("evt_failed",)
    not_bad_debt = update("subs.subs_account", {"account_id": ACC}, "bad_debt", True, False)
    assert causes(not_bad_debt, a_state()) == ("billing_prod.invoices[inv_42]@1", "evt_failed"), \
        "a value that holds because nothing happened points at the events that show it"


def test_an_event_body_says_before_and_after_of_what_was_applied():
    body = event_body(event_id="e1", type="account.dunning_stage_changed", account_id=ACC, subject="",
                      rules_version="v1", rules_digest="2742993c6f6b6a8b", run_id="run-1", as_of=T, occurred_at=T,
                      applied=[(BILLING_STAGE, ["evt_failed"]), (SUBS_STAGE, ["evt_failed", "x"])])
    assert body["before"] == {"billing_prod.dunning[account_id=acc_000042]": {"stage": "none"},
                              "subs.subs_dunning[account_id=acc_000042]": {"stage": "grace"}}
    assert body["after"]["subs.subs_dunning[account_id=acc_000042]"] == {"stage": "retrying"}
    assert body["causes"] == ["evt_failed", "x"] and body["subject"] is None and len(body["corrections"]) == 2
    assert (body["rules_version"], body["rules_digest"]) == ("v1", "2742993c6f6b6a8b")


@pytest.mark.parametrize("changing,checked,options,refused", [
    (10, 100, ApplyOptions(), False),
    (11, 100, ApplyOptions(), True),
    (11, 100, ApplyOptions(force=True), False),
    (30, 100, ApplyOptions(max_share=0.3), False),
    (1, 1, ApplyOptions(account="acc_000042"), False),
    (0, 0, ApplyOptions(), False),
])
def test_the_blast_radius_guard(changing, checked, options, refused):
    if refused:
        with pytest.raises(ApplyRefused, match=f"refusing to change {changing} of {checked} accounts"):
            check_blast_radius(changing, checked, options)
    else:
        check_blast_radius(changing, checked, options)
