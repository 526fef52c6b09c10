"""Which corrections a held row withholds (domain/held.py, pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.catalog import Catalog
from domain.diff import corrections_for
from domain.held import HeldRow, hold, plan_not_in_catalog
from tests.support.states import ACC, a_state, agreeing_rows

CATALOG = Catalog(plans={"free": ("api",), "pro": ("api", "sso")})
PARKED_AT = datetime(2026, 3, 2, tzinfo=UTC)


def parked(table: str, reason: str = "unknown source 'vip'", **key) -> HeldRow:
    return HeldRow(account_id=ACC, table=table, key=key, reason=reason, parked_at=PARKED_AT)


def planned(state, rows, parked_rows=()):
    return hold(state, CATALOG, parked_rows, rows, corrections_for(state, rows))


def drifting_rows():
    """sso switched off and the dunning stage behind: two corrections of two rows."""
    return agreeing_rows(**{
        "cf_prod__entitlements": [{"account_id": ACC, "feature": "api", "enabled": True, "source": "plan"},
                                  {"account_id": ACC, "feature": "sso", "enabled": False, "source": "vip"}],
        "billing_prod__dunning": [{"account_id": ACC, "stage": "Retrying"}],
    })


def test_a_row_whose_latest_version_was_parked_gets_no_correction_and_the_others_still_do():
    state = a_state(stage="grace")
    sso = parked("cf_prod.entitlements", account_id=ACC, feature="sso")
    kept, held = planned(state, drifting_rows(), [sso])
    assert [(c.table, c.op) for c in kept] == [("billing_prod.dunning", "update"), ("subs.subs_dunning", "insert")]
    assert held == [sso]


def test_a_parked_row_is_matched_by_table_and_key_whatever_the_keys_type():
    rows = agreeing_rows(subs__subs_customer=[{"id": 7, "account_id": ACC, "stripe_customer_id": "cus_old",
                                               "source": "setup"}])
    mapping = parked("subs.subs_customer", "bad timestamp: created_at = 'infinity'", id="7")  # key text from ingest
    assert planned(a_state(), rows, [mapping]) == ([], [mapping])
    other_table = parked("subs.subs_account", id="7")
    assert [c.table for c in planned(a_state(), rows, [other_table])[0]] == ["subs.subs_customer"]


def test_with_nothing_parked_and_a_known_plan_every_correction_stays():
    state = a_state(stage="grace")
    assert planned(state, drifting_rows()) == (corrections_for(state, drifting_rows()), [])


def test_a_plan_not_in_the_catalog_holds_every_non_manual_entitlement_and_writes_none():
    state = a_state(plan="enterprise", entitlements={"api": False, "sso": False}, stage="grace")
    rows = agreeing_rows(cf_prod__entitlements=[
        {"account_id": ACC, "feature": "api", "enabled": True, "source": "plan"},
        {"account_id": ACC, "feature": "sso", "enabled": True, "source": "plan"},
        {"account_id": ACC, "feature": "beta", "enabled": True, "source": "manual"}])
    kept, held = planned(state, rows)
    assert {c.table for c in kept} == {"billing_prod.dunning", "subs.subs_dunning"}  # the rest proceeds
    assert [(h.key["feature"], h.reason, h.parked_at) for h in held] == [
        ("api", "plan 'enterprise' is not in product_config", None),
        ("sso", "plan 'enterprise' is not in product_config", None)]


def test_a_row_both_parked_and_under_an_unknown_plan_is_listed_once_with_its_parked_reason():
    state = a_state(plan="enterprise", entitlements={"api": False, "sso": False})
    sso = parked("cf_prod.entitlements", account_id=ACC, feature="sso")
    _, held = planned(state, drifting_rows(), [sso])
    assert [(h.key["feature"], h.reason) for h in held] == [("api", "plan 'enterprise' is not in product_config"),
                                                             ("sso", "unknown source 'vip'")]


def test_the_plan_that_decides_is_the_one_the_status_uses():
    assert plan_not_in_catalog(a_state(plan="enterprise"), CATALOG) == "plan 'enterprise' is not in product_config"
    assert plan_not_in_catalog(a_state(plan="enterprise", status="suspended"), CATALOG) is None  # free decides
    assert plan_not_in_catalog(a_state(plan="pro", status="suspended"), Catalog(plans={"pro": ("api",)})) == (
        "plan 'free' is not in product_config")
    assert plan_not_in_catalog(a_state(plan="enterprise", status="closed"), CATALOG) is None  # nothing is enabled
    assert plan_not_in_catalog(a_state(plan="pro"), CATALOG) is None
    assert plan_not_in_catalog(a_state(plan="pro"), Catalog()) == "plan 'pro' is not in product_config"


def test_held_rows_read_as_cli_json_with_an_offset():
    assert parked("billing_prod.dunning", "unknown stage 'Retrying'", account_id=ACC).as_json() == {
        "account_id": ACC, "table": "billing_prod.dunning", "key": {"account_id": ACC},
        "reason": "unknown stage 'Retrying'", "parked_at": "2026-03-02T00:00:00+00:00"}


# -- tables blocked by their schema (issue 18) ----------------------------------------------------

def test_no_correction_of_a_blocked_table_is_kept_and_its_row_is_held_with_why():
    from domain.held import blocked_hold, withhold_blocked

    state = a_state(stage="grace")
    corrections, held = planned(state, drifting_rows())
    kept, held = withhold_blocked(corrections, held, {"billing_prod.dunning": "stage_since: no such column"})
    assert "billing_prod.dunning" not in {c.table for c in kept} and kept
    [row] = held
    assert (row.table, row.reason) == ("billing_prod.dunning",
                                       "table billing_prod.dunning blocked: stage_since: no such column")
    assert blocked_hold(row) and not blocked_hold(parked("cf_prod.entitlements", feature="sso"))


def test_while_a_table_the_truth_is_decided_from_is_blocked_nothing_at_all_is_corrected():
    from domain.held import withhold_blocked

    corrections, held = planned(a_state(stage="grace"), drifting_rows())
    kept, held = withhold_blocked(corrections, held, {"billing_prod.invoices": "amount_paid: numeric, expected bigint"})
    assert kept == [] and len(held) == len(corrections)
    assert {h.reason for h in held} == {"table billing_prod.invoices blocked: amount_paid: numeric, expected bigint"}


def test_nothing_is_withheld_when_no_table_is_blocked():
    from domain.held import withhold_blocked

    corrections, held = planned(a_state(stage="grace"), drifting_rows())
    assert withhold_blocked(corrections, held, {}) == (corrections, held)
