"""The row checks of ingestion: a parked row's reason says what is wrong (issue 18, defect 3)."""

from __future__ import annotations

import pytest

from domain.legacy_tables import BY_NAME, TABLES
from ingestion.legacy.tables import check_row

T = "2026-03-01T00:00:00+00:00"
GOOD_ROWS: dict[str, dict] = {  # one row of every table as row_to_json gives it, that the checks accept
    "cf_prod.accounts": {"account_id": "acc_000042", "name": "Acme", "plan": "pro", "status": "active",
                         "created_at": T, "updated_at": T},
    "cf_prod.product_config": {"plan": "pro", "feature": "api"},
    "cf_prod.entitlements": {"account_id": "acc_000042", "feature": "api", "enabled": True, "source": "plan",
                             "updated_at": T},
    "billing_prod.invoices": {"invoice_id": "inv_1", "account_id": "acc_000042", "stripe_invoice_id": None,
                              "status": "open", "currency": "usd", "amount_due": 500, "amount_paid": 0,
                              "due_at": T, "created_at": T, "updated_at": T},
    "billing_prod.charges": {"charge_id": "ch_1", "account_id": "acc_000042", "invoice_id": "inv_1",
                             "stripe_charge_id": None, "amount": 500, "status": "failed",
                             "failure_code": "card_declined", "created_at": T},
    "billing_prod.dunning": {"account_id": "acc_000042", "stage": "grace", "stage_since": None, "updated_at": T},
    "billing_prod.schedules": {"invoice_id": "inv_1", "attempt": 1, "account_id": "acc_000042",
                               "scheduled_at": T, "status": "pending"},
    "subs.subs_account": {"account_id": "acc_000042", "billing_email": None, "country": "US", "currency": "usd",
                          "payment_method": None, "bad_debt": False, "delinquent": False, "updated_at": T},
    "subs.subs_customer": {"id": 7, "account_id": "acc_000042", "stripe_customer_id": "cus_1",
                           "source": "setup", "created_at": T},
    "subs.subs_dunning": {"account_id": "acc_000042", "stage": "none", "attempt_count": 0,
                          "next_action_at": None, "updated_at": T},
    "subs.subs_subscription": {"account_id": "acc_000042", "stripe_subscription_id": "sub_1", "status": "active",
                               "current_period_end": T, "updated_at": T},
    "subs.subs_invoice": {"stripe_invoice_id": "in_1", "account_id": "acc_000042", "status": "open",
                          "amount_remaining": 500, "attempt_count": 1, "updated_at": T},
}

NOT_NULL = [(spec.name, name) for spec in TABLES for name, column in spec.columns.items()
            if column.not_null and name not in spec.key and name != spec.account]


def reason(table: str, **changed: object) -> str | None:
    return check_row(BY_NAME[table], {**GOOD_ROWS[table], **changed})


def test_a_good_row_of_every_table_is_recorded():
    assert {name: check_row(BY_NAME[name], row) for name, row in GOOD_ROWS.items()} == dict.fromkeys(GOOD_ROWS)


@pytest.mark.parametrize(("table", "column"), NOT_NULL)
def test_a_null_in_any_not_null_column_of_the_contract_is_parked_as_null(table, column):
    """A NULL bad_debt (its owners relaxed NOT NULL) is parked, not overwritten, as a NULL
    attempt_count is: the contract's NOT NULL columns are treated one way, whichever it is."""
    assert reason(table, **{column: None}) == f"{column}: null (NOT NULL in legacy-stores.md)"


def test_a_null_count_is_parked_as_null_not_as_a_negative_count():
    assert reason("subs.subs_dunning", attempt_count=None) == "attempt_count: null (NOT NULL in legacy-stores.md)"


def test_a_numeric_amount_is_parked_as_not_an_integer():
    """`amount_paid` turned numeric: row_to_json gives 500.0, which is no negative money."""
    assert reason("billing_prod.invoices", amount_paid=500.0) == "amount_paid: not an integer: 500.0"


def test_a_boolean_column_holding_text_is_parked_as_not_a_boolean():
    assert reason("subs.subs_account", delinquent="true") == "delinquent: not a boolean: 'true'"


def test_a_boolean_is_not_an_integer():
    assert reason("subs.subs_invoice", attempt_count=True) == "attempt_count: not an integer: True"


def test_a_row_without_a_column_recompute_reads_is_parked_as_no_such_column():
    row = {k: v for k, v in GOOD_ROWS["subs.subs_account"].items() if k != "delinquent"}
    assert check_row(BY_NAME["subs.subs_account"], {**row, "is_delinquent": False}) == "delinquent: no such column"


def test_a_negative_amount_is_still_negative_money():
    assert reason("billing_prod.invoices", amount_paid=-5) == "negative money: amount_paid = -5"


def test_a_nullable_column_may_be_null():
    assert reason("billing_prod.invoices", due_at=None, stripe_invoice_id=None) is None
