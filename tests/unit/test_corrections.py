"""The minimal corrections of rules-v1 §3, from a true state and the account's legacy rows (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.diff import WRITABLE, corrections_for
from domain.state import TrueStripeInvoice, TrueSubscription
from tests.support.states import ACC, T, a_state, agreeing_rows


def summary(corrections) -> list[tuple]:
    return [(c.table, c.op, c.column, c.from_, c.to) for c in corrections]


def test_an_account_whose_rows_agree_needs_nothing():
    assert corrections_for(a_state(), agreeing_rows()) == []


def test_only_the_drifting_column_of_a_drifting_row_is_corrected():
    rows = agreeing_rows(subs__subs_dunning=[
        {"account_id": ACC, "stage": "none", "attempt_count": 2, "next_action_at": None, "updated_at": "x"}])
    state = a_state(stage="retrying", failed_attempts=2, delinquent=True,
                    next_action_at=datetime(2026, 3, 10, tzinfo=UTC))
    found = [c for c in corrections_for(state, rows) if c.table == "subs.subs_dunning"]
    assert summary(found) == [
        ("subs.subs_dunning", "update", "next_action_at", None, "2026-03-10T00:00:00+00:00"),
        ("subs.subs_dunning", "update", "stage", "none", "retrying"),
    ]
    assert found[0].key == {"account_id": ACC}


def test_timestamps_are_compared_as_instants_not_as_text():
    rows = agreeing_rows(subs__subs_dunning=[
        {"account_id": ACC, "stage": "grace", "attempt_count": 0, "next_action_at": "2026-03-10T01:00:00+01:00"}],
        billing_prod__dunning=[{"account_id": ACC, "stage": "grace"}])
    state = a_state(stage="grace", next_action_at=datetime(2026, 3, 10, tzinfo=UTC))
    assert corrections_for(state, rows) == []


def test_an_absent_dunning_row_is_inserted_only_when_absence_would_be_wrong():
    assert corrections_for(a_state(), agreeing_rows()) == []  # absent means none, 0, null: true
    state = a_state(stage="grace", stage_since=T, next_action_at=datetime(2026, 3, 3, tzinfo=UTC))
    inserts = [(c.table, c.key, c.to) for c in corrections_for(state, agreeing_rows()) if c.op == "insert"]
    assert inserts == [
        ("billing_prod.dunning", {"account_id": ACC},
         {"account_id": ACC, "stage": "grace", "stage_since": "2026-03-01T00:00:00+00:00"}),
        ("subs.subs_dunning", {"account_id": ACC},
         {"account_id": ACC, "stage": "grace", "attempt_count": 0, "next_action_at": "2026-03-03T00:00:00+00:00"}),
    ]


def test_duplicate_customer_mappings_keep_the_lowest_row_holding_the_true_id():
    rows = agreeing_rows(subs__subs_customer=[
        {"id": 3, "account_id": ACC, "stripe_customer_id": "cus_dup", "source": "checkout"},
        {"id": 5, "account_id": ACC, "stripe_customer_id": "cus_42", "source": "setup"},
        {"id": 9, "account_id": ACC, "stripe_customer_id": "cus_42", "source": "checkout"}])
    assert [(c.op, c.key) for c in corrections_for(a_state(), rows)] == [("delete", {"id": 3}), ("delete", {"id": 9})]


def test_when_no_mapping_holds_the_true_customer_the_lowest_id_row_is_updated():
    rows = agreeing_rows(subs__subs_customer=[
        {"id": 4, "account_id": ACC, "stripe_customer_id": "cus_old", "source": "setup"},
        {"id": 8, "account_id": ACC, "stripe_customer_id": "cus_other", "source": "checkout"}])
    assert summary(corrections_for(a_state(), rows)) == [
        ("subs.subs_customer", "update", "stripe_customer_id", "cus_old", "cus_42"),
        ("subs.subs_customer", "delete", None,
         {"id": 8, "account_id": ACC, "stripe_customer_id": "cus_other", "source": "checkout"}, None),
    ]


def test_a_missing_customer_mapping_is_inserted_with_a_null_key():
    [insert] = corrections_for(a_state(), agreeing_rows(subs__subs_customer=[]))
    assert (insert.op, insert.key, insert.to["stripe_customer_id"]) == ("insert", None, "cus_42")


def test_no_stripe_customer_means_the_mappings_are_left_alone():
    rows = agreeing_rows(subs__subs_customer=[{"id": 1, "account_id": ACC, "stripe_customer_id": "cus_x"}] * 2)
    assert corrections_for(a_state(stripe_customer_id=None), rows) == []


def test_manual_entitlements_are_never_corrected():
    rows = agreeing_rows(cf_prod__entitlements=[
        {"account_id": ACC, "feature": "api", "enabled": True, "source": "plan"},
        {"account_id": ACC, "feature": "sso", "enabled": False, "source": "manual"},
        {"account_id": ACC, "feature": "audit", "enabled": True, "source": "manual"}])
    state = a_state(entitlements={"api": True}, manual_features=("sso", "audit"))
    assert corrections_for(state, rows) == []


def test_a_missing_entitlement_is_inserted_only_when_enabled_with_the_source_of_why():
    rows = agreeing_rows(cf_prod__entitlements=[])
    inserted = {c.key["feature"]: c.to for c in corrections_for(a_state(), rows)}
    assert set(inserted) == {"api", "sso"}  # audit is disabled: absence already says so
    assert inserted["api"]["source"] == "plan"
    suspended = a_state(status="suspended", stage="suspended", entitlements={"basic": True, "api": False})
    rows = agreeing_rows(cf_prod__entitlements=[], cf_prod__accounts=[{"account_id": ACC, "status": "suspended"}],
                         billing_prod__dunning=[{"account_id": ACC, "stage": "suspended"}])
    [insert] = [c for c in corrections_for(suspended, rows) if c.table == "cf_prod.entitlements"]
    assert insert.to == {"account_id": ACC, "feature": "basic", "enabled": True, "source": "dunning"}


def test_a_non_manual_entitlement_for_a_feature_no_plan_includes_must_be_off():
    rows = agreeing_rows(cf_prod__entitlements=[
        *agreeing_rows()["cf_prod.entitlements"],
        {"account_id": ACC, "feature": "legacy_beta", "enabled": True, "source": "plan"}])
    assert summary(corrections_for(a_state(), rows)) == [
        ("cf_prod.entitlements", "update", "enabled", True, False)]


def test_a_stripe_invoice_corrects_billing_status_and_the_subs_cache_and_inserts_a_missing_cache_row():
    state = a_state(stripe_invoices={
        "in_1": TrueStripeInvoice(stripe_invoice_id="in_1", invoice_id="inv_1", status="paid", amount_due=2900,
                                  amount_paid=2900, amount_remaining=0, attempt_count=2),
        "in_2": TrueStripeInvoice(stripe_invoice_id="in_2", invoice_id=None, status="open", amount_due=100,
                                  amount_paid=0, amount_remaining=100, attempt_count=1)})
    rows = agreeing_rows(
        billing_prod__invoices=[{"invoice_id": "inv_1", "status": "open", "amount_paid": 0, "amount_due": 2900}],
        subs__subs_invoice=[{"stripe_invoice_id": "in_1", "status": "paid", "amount_remaining": 0,
                             "attempt_count": 1}])
    assert summary(corrections_for(state, rows)) == [
        ("billing_prod.invoices", "update", "amount_paid", 0, 2900),
        ("billing_prod.invoices", "update", "status", "open", "paid"),
        ("subs.subs_invoice", "update", "attempt_count", 1, 2),
        ("subs.subs_invoice", "insert", None, None, {"stripe_invoice_id": "in_2", "account_id": ACC,
                                                     "status": "open", "amount_remaining": 100,
                                                     "attempt_count": 1}),
    ]


def test_the_subscription_row_follows_stripes_latest_subscription():
    state = a_state(subscription=TrueSubscription(subscription_id="sub_2", status="past_due",
                                                  current_period_end=datetime(2026, 3, 20, tzinfo=UTC)))
    rows = agreeing_rows(subs__subs_subscription=[
        {"account_id": ACC, "stripe_subscription_id": "sub_1", "status": "active",
         "current_period_end": "2026-03-20T00:00:00+00:00"}])
    assert summary(corrections_for(state, rows)) == [
        ("subs.subs_subscription", "update", "status", "active", "past_due"),
        ("subs.subs_subscription", "update", "stripe_subscription_id", "sub_1", "sub_2")]


def test_an_account_cf_prod_does_not_know_gets_no_corrections():
    assert corrections_for(a_state(account_exists=False, stage="grace"), {}) == []


def test_flags_and_status_are_corrected_on_their_rows():
    state = a_state(status="suspended", stage="suspended", bad_debt=True, delinquent=True,
                    entitlements={"api": False, "sso": False})
    rows = agreeing_rows(billing_prod__dunning=[{"account_id": ACC, "stage": "suspended"}],
                         subs__subs_dunning=[{"account_id": ACC, "stage": "suspended", "attempt_count": 0,
                                              "next_action_at": None}])
    columns = {(c.table, c.column) for c in corrections_for(state, rows)}
    assert columns == {("cf_prod.accounts", "status"), ("subs.subs_account", "bad_debt"),
                       ("subs.subs_account", "delinquent"), ("cf_prod.entitlements", "enabled")}


def test_only_writable_columns_are_ever_proposed():
    state = a_state(status="suspended", stage="final_notice", bad_debt=True, delinquent=True, failed_attempts=5,
                    entitlements={"api": False}, subscription=TrueSubscription(
                        subscription_id="sub_9", status="unpaid", current_period_end=None))
    rows = agreeing_rows(subs__subs_customer=[{"id": 1, "account_id": ACC, "stripe_customer_id": "x"}] * 3)
    for correction in corrections_for(state, rows):
        assert correction.op != "update" or correction.column in WRITABLE[correction.table]
