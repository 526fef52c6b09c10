"""The legacy writer can only express the writes rules-v1 §3 allows, each one compare-and-set."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from domain.diff import WRITABLE, Correction
from projections.apply.cas_sql import SPECS, WriteRefused, probe, statement
from simulation.fleet import generate_fleet

ACC = "acc_000042"


def update(table, key, column, from_, to, account=ACC) -> Correction:
    return Correction(account_id=account, table=table, op="update", key=key, column=column, from_=from_, to=to)


def insert(table, key, row, account=ACC) -> Correction:
    return Correction(account_id=account, table=table, op="insert", key=key, column=None, from_=None, to=row)


def delete(table, key, row) -> Correction:
    return Correction(account_id=ACC, table=table, op="delete", key=key, column=None, from_=row, to=None)


def text(composed) -> str:
    return composed.as_string(None)


def assigned(sql_text: str) -> set[str]:
    """The columns an UPDATE's SET clause assigns."""
    set_clause = sql_text.split(" SET ", 1)[1].split(" WHERE ", 1)[0]
    return set(re.findall(r'"(\w+)" = ', set_clause))


def test_the_writer_knows_exactly_the_writable_columns():
    assert {table: frozenset(spec.writable) for table, spec in SPECS.items()} == WRITABLE


@pytest.mark.parametrize("table,column", [(t, c) for t, cs in WRITABLE.items() for c in sorted(cs)])
def test_an_update_assigns_its_column_and_only_the_bookkeeping_rules_v1_names(table, column):
    spec = SPECS[table]
    key = {k: 7 if k == "id" else ACC if k == "account_id" else "x" for k in spec.key}
    sets = {name: None for name in spec.bookkeeping}
    query, params = statement(update(table, key, column, "old", "new"), sets)
    assert assigned(text(query)) == {column, *spec.bookkeeping, *([spec.stamp] if spec.stamp else [])}
    assert f'"{column}" IS NOT DISTINCT FROM %(from)s' in text(query)
    assert params["from"] == "old" and params["to"] == "new"


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
    assert "stage_since" in assigned(text(statement(dunning, {"stage_since": "2026-02-01T00:00:00+00:00"})[0]))
    with pytest.raises(WriteRefused):
        statement(dunning, {"updated_at": "2020-01-01T00:00:00+00:00"})
    with pytest.raises(WriteRefused):
        statement(update("subs.subs_dunning", {"account_id": ACC}, "stage", "none", "grace"), {"stage_since": None})


def test_an_entitlement_update_never_touches_a_manual_row():
    query, _ = statement(update("cf_prod.entitlements", {"account_id": ACC, "feature": "api"}, "enabled", False, True),
                         {"source": "plan"})
    assert "source IS DISTINCT FROM 'manual'" in text(query)


def test_inserts_are_conflict_safe_and_a_delete_only_takes_the_row_as_seen():
    query, _ = statement(insert("subs.subs_dunning", {"account_id": ACC},
                                {"account_id": ACC, "stage": "grace", "attempt_count": 0, "next_action_at": None}), {})
    assert text(query).endswith("ON CONFLICT DO NOTHING")
    mapping, params = statement(insert("subs.subs_customer", None, {"account_id": ACC, "stripe_customer_id": "cus_1",
                                                                    "source": "setup"}), {})
    assert "WHERE NOT EXISTS (SELECT 1 FROM \"subs_customer\" WHERE account_id = %(account)s)" in text(mapping)
    assert '"created_at"' in text(mapping) and '"updated_at"' not in text(mapping)
    row = {"id": 7, "account_id": ACC, "stripe_customer_id": "cus_dup", "source": "checkout",
           "created_at": "2026-01-01T00:00:00+00:00"}
    gone, params = statement(delete("subs.subs_customer", {"id": 7}, row), {})
    assert "to_jsonb(t) = %(row)s::jsonb" in text(gone) and params["row"].obj == row


def test_a_probe_asks_whether_the_row_already_holds_what_the_correction_writes():
    query, params = probe(update("subs.subs_dunning", {"account_id": ACC}, "next_action_at", None,
                                 "2026-03-05T00:00:00+00:00"))
    assert '"next_action_at" IS NOT DISTINCT FROM %(to)s::timestamptz' in text(query)
    assert "NOT EXISTS" in text(probe(delete("subs.subs_customer", {"id": 7}, {"id": 7}))[0])


def test_every_correction_of_a_generated_fleet_can_be_written():
    fleet = generate_fleet(accounts=300, seed=7, drifting=40, now=datetime(2026, 3, 1, tzinfo=UTC))
    for expected in fleet.expected_corrections:
        correction = Correction.model_validate(expected)
        sets = {"stage_since": None} if correction.table == "billing_prod.dunning" and correction.op == "update" else {}
        statement(correction, sets)
        probe(correction)
