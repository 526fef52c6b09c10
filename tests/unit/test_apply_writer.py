"""The legacy writer can only express the writes rules-v1 §3 allows. What its statements do to rows
(compare-and-set, only their column, never a manual row) is tested on a database:
tests/integration/test_apply_writer.py."""

from __future__ import annotations

import pytest

from domain.diff import WRITABLE, Correction
from projections.apply.cas_sql import SPECS, WriteRefused, statement

ACC = "acc_000042"


def update(table, key, column, from_, to, account=ACC) -> Correction:
    return Correction(account_id=account, table=table, op="update", key=key, column=column, from_=from_, to=to)


def insert(table, key, row, account=ACC) -> Correction:
    return Correction(account_id=account, table=table, op="insert", key=key, column=None, from_=None, to=row)


def delete(table, key, row) -> Correction:
    return Correction(account_id=ACC, table=table, op="delete", key=key, column=None, from_=row, to=None)


def test_the_writer_knows_exactly_the_writable_columns():
    assert {table: frozenset(spec.writable) for table, spec in SPECS.items()} == WRITABLE


@pytest.mark.parametrize("correction", [
    update("billing_prod.invoices", {"invoice_id": "inv_1"}, "amount_due", 1, 2),
    update("cf_prod.accounts", {"account_id": ACC}, "plan", "pro", "free"),
    update("subs.subs_account", {"account_id": ACC}, "billing_email", "a@b", "c@d"),
    update("cf_prod.entitlements", {"account_id": ACC, "feature": "api"}, "source", "manual", "plan"),
    update("billing_prod.charges", {"charge_id": "ch_1"}, "status", "failed", "succeeded"),
    update("cf_prod.product_config", {"plan": "pro", "feature": "api"}, "feature", "api", "sso"),
    update("billing_prod.schedules", {"invoice_id": "inv_1", "attempt": 1}, "status", "pending", "done"),
    update("stripe.invoices", {"id": "in_1"}, "status", "open", "paid"),
    insert("billing_prod.invoices", {"invoice_id": "inv_1"}, {"invoice_id": "inv_1", "account_id": ACC}),
    insert("subs.subs_account", {"account_id": ACC}, {"account_id": ACC, "bad_debt": True}),
    insert("subs.subs_invoice", {"stripe_invoice_id": "in_1"},
           {"stripe_invoice_id": "in_1", "account_id": ACC, "status": "open", "updated_at": "2026-01-01"}),
    insert("subs.subs_dunning", {"account_id": ACC}, {"account_id": "acc_other", "stage": "grace"}),
    delete("cf_prod.entitlements", {"account_id": ACC, "feature": "api"}, {"account_id": ACC, "feature": "api"}),
    delete("billing_prod.dunning", {"account_id": ACC}, {"account_id": ACC, "stage": "grace"}),
    update("subs.subs_dunning", {"account_id": "acc_other"}, "stage", "none", "grace"),
    update("subs.subs_dunning", {"stage": "none"}, "stage", "none", "grace"),
])
def test_a_write_rules_v1_does_not_allow_cannot_be_expressed(correction):
    with pytest.raises(WriteRefused):
        statement(correction, {})


def test_bookkeeping_is_only_what_rules_v1_has_the_projector_set():
    dunning = update("billing_prod.dunning", {"account_id": ACC}, "stage", "none", "grace")
    assert statement(dunning, {"stage_since": "2026-02-01T00:00:00+00:00"})[1]["set_stage_since"] is not None
    with pytest.raises(WriteRefused):
        statement(dunning, {"updated_at": "2020-01-01T00:00:00+00:00"})
    with pytest.raises(WriteRefused):
        statement(update("subs.subs_dunning", {"account_id": ACC}, "stage", "none", "grace"), {"stage_since": None})
