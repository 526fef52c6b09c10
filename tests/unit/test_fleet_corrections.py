"""The fleet oracle's corrections (rules v1 §3) and how two correction lists are compared."""

from datetime import UTC, datetime, timedelta

from simulation.oracle.expected_corrections import compare_corrections, plan_corrections
from simulation.oracle.expected_state import true_state
from simulation.records import PLAN_FEATURES, AccountRecords

T = datetime(2026, 3, 1, tzinfo=UTC)
TS = int(T.timestamp())
DAY = 86400
ACC = "acc_000042"


def an_account(*, invoice_status="paid", stripe_status="paid", attempts=1, due_days_ago=10,
               customers=("cus_A",), rows=(("cus_A", 1),)) -> AccountRecords:
    """A pro account with one Stripe invoice of 9900 due `due_days_ago`, and legacy rows that
    agree with Stripe except where the arguments say otherwise."""
    paid = 9900 if stripe_status == "paid" else 0
    r = AccountRecords(account_id=ACC, account={"account_id": ACC, "plan": "pro", "status": "active"})
    r.invoices = [{"invoice_id": "inv_000042_01", "account_id": ACC, "stripe_invoice_id": "in_1",
                   "status": invoice_status, "amount_due": 9900, "amount_paid": paid,
                   "due_at": T - timedelta(days=due_days_ago, hours=5)}]
    r.stripe_invoices = [{"id": "in_1", "customer": "cus_A", "status": stripe_status, "amount_due": 9900,
                          "amount_paid": paid, "attempt_count": attempts}]
    r.customers = [{"id": c, "object": "customer", "created": TS - (10 - i) * DAY,
                    "metadata": {"account_id": ACC}} for i, c in enumerate(customers)]
    r.subs_customer = [{"id": n, "account_id": ACC, "stripe_customer_id": c, "source": "setup"} for c, n in rows]
    r.subs_invoice = [{"stripe_invoice_id": "in_1", "account_id": ACC, "status": stripe_status,
                       "amount_remaining": 9900 - paid, "attempt_count": attempts}]
    r.subs_account = {"account_id": ACC, "bad_debt": False, "delinquent": False}
    r.entitlements = [{"account_id": ACC, "feature": f, "enabled": True, "source": "plan"}
                      for f in sorted(PLAN_FEATURES["pro"])]
    return r


def corrections(r: AccountRecords) -> list[dict]:
    return plan_corrections(true_state(r, PLAN_FEATURES, T), r)


def test_an_account_that_agrees_needs_nothing():
    assert corrections(an_account()) == []


def test_a_payment_stripe_saw_and_billing_missed_is_corrected_in_billing_only():
    found = corrections(an_account(invoice_status="open"))
    assert found == [{"account_id": ACC, "table": "billing_prod.invoices", "op": "update",
                      "key": {"invoice_id": "inv_000042_01"}, "column": "status", "from": "open", "to": "paid"}]


def test_a_past_due_invoice_needs_both_dunning_rows_and_the_delinquent_flag():
    found = corrections(an_account(invoice_status="open", stripe_status="open", attempts=2))
    by_table = {(c["table"], c["op"], c["column"]): c for c in found}
    assert by_table[("billing_prod.dunning", "insert", None)]["to"] == {"account_id": ACC, "stage": "retrying"}
    assert by_table[("subs.subs_dunning", "insert", None)]["to"] == {
        "account_id": ACC, "stage": "retrying", "attempt_count": 2,
        "next_action_at": (T - timedelta(days=10, hours=5) + timedelta(days=14)).isoformat()}
    assert by_table[("subs.subs_account", "update", "delinquent")]["to"] is True


def test_duplicate_mappings_keep_the_lowest_row_that_holds_the_true_customer():
    found = corrections(an_account(rows=(("cus_OLD", 3), ("cus_A", 5), ("cus_A", 9))))
    assert [(c["op"], c["key"], c["from"]) for c in found] == [
        ("delete", {"id": 3}, {"stripe_customer_id": "cus_OLD"}),
        ("delete", {"id": 9}, {"stripe_customer_id": "cus_A"}),
    ]


def test_when_no_mapping_holds_the_true_customer_the_lowest_row_is_updated():
    found = corrections(an_account(rows=(("cus_X", 8), ("cus_Y", 4))))
    assert [(c["op"], c["key"], c["column"], c["to"]) for c in found] == [
        ("update", {"id": 4}, "stripe_customer_id", "cus_A"),
        ("delete", {"id": 8}, None, None),
    ]


def test_the_earliest_live_customer_is_the_accounts_and_a_missing_mapping_is_inserted_without_key():
    found = corrections(an_account(customers=("cus_A", "cus_B"), rows=()))
    assert found == [{"account_id": ACC, "table": "subs.subs_customer", "op": "insert", "key": None,
                      "column": None, "from": None,
                      "to": {"account_id": ACC, "stripe_customer_id": "cus_A", "source": "setup"}}]


def test_manual_entitlements_are_never_corrected():
    r = an_account()
    r.entitlements.append({"account_id": ACC, "feature": "sso", "enabled": True, "source": "manual"})
    assert corrections(r) == []


def test_a_missing_entitlement_is_inserted_only_when_it_should_be_enabled():
    r = an_account()
    r.entitlements = [e for e in r.entitlements if e["feature"] != "exports"]
    assert [(c["op"], c["key"]["feature"], c["to"]["enabled"]) for c in corrections(r)] == [
        ("insert", "exports", True)]


def test_comparison_ignores_order_stage_since_source_and_how_an_instant_is_written():
    update = {"account_id": ACC, "table": "subs.subs_dunning", "op": "update", "key": {"account_id": ACC},
              "column": "next_action_at", "from": None, "to": "2026-03-14T19:00:00+00:00"}
    insert = {"account_id": ACC, "table": "billing_prod.dunning", "op": "insert", "key": {"account_id": ACC},
              "column": None, "from": None, "to": {"account_id": ACC, "stage": "retrying"}}
    actual = [
        {**insert, "to": {"account_id": ACC, "stage": "retrying", "stage_since": "2026-02-20T00:00:00Z",
                          "updated_at": "2026-03-01T00:00:00Z", "source": "x"}},
        {**update, "to": "2026-03-14T19:00:00Z"},
    ]
    assert compare_corrections([update, insert], actual) == []


def test_comparison_reports_what_is_missing_and_what_is_unexpected():
    update = {"account_id": ACC, "table": "subs.subs_dunning", "op": "update", "key": {"account_id": ACC},
              "column": "stage", "from": "none", "to": "retrying"}
    differences = compare_corrections([update], [{**update, "to": "grace"}])
    assert len(differences) == 2
    assert differences[0].startswith("missing") and '"to":"retrying"' in differences[0]
    assert differences[1].startswith("unexpected") and '"to":"grace"' in differences[1]


def test_comparison_counts_duplicates():
    delete = {"account_id": ACC, "table": "subs.subs_customer", "op": "delete", "key": {"id": 7},
              "column": None, "from": {"stripe_customer_id": "cus_dup"}, "to": None}
    assert compare_corrections([delete], [delete, delete]) != []
    assert compare_corrections([delete], [{**delete, "from": {"id": 7, "stripe_customer_id": "cus_dup",
                                                               "account_id": ACC}}]) == []
