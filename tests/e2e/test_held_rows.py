"""A record that was parked holds what it touches: `plan`, `apply` and `explain` on the real PostgreSQL.

A legacy row whose latest version ingest could not record (parked) is not understood, so nothing
is planned for it (nor applied) and `plan`/`explain` say why; the rest of its account is corrected.
An account whose plan product_config does not know keeps its entitlements, held with the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import psycopg
import pytest

from eventlog.own_tables import ensure_own_schema
from eventlog.stores import Stores
from ingestion.legacy.snapshot import LegacySnapshotIngester
from tests.support.legacy import a_dunning_row, a_plan, an_account, an_entitlement, an_invoice, create_stores, execute

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
AS_OF = ("--as-of", "2026-03-05T00:00:00+00:00")
VIP = "unknown source 'vip' (expected one of dunning, manual, plan)"
RETRYING = "unknown stage 'Retrying' (expected one of final_notice, grace, none, retrying, suspended)"
NO_PLAN = "plan 'enterprise' is not in product_config"


@pytest.fixture
def world(stores):
    """acc_000042: pro, its api entitlement drifting (off), sso fine. acc_000043: an invoice 9 days
    overdue and a dunning row still at 'none'. acc_000044: on a plan product_config does not know."""
    create_stores(stores)
    ensure_own_schema(stores["eventstore"])
    a_plan(stores)
    an_account(stores)
    an_entitlement(stores, "api", enabled=False)
    an_entitlement(stores, "sso", enabled=True)
    an_account(stores, "acc_000043")
    an_invoice(stores, "inv_000043_01", account_id="acc_000043")
    a_dunning_row(stores, "acc_000043")
    an_account(stores, "acc_000044", plan="enterprise")
    an_entitlement(stores, "api", account_id="acc_000044", enabled=True)
    an_entitlement(stores, "sso", account_id="acc_000044", enabled=True)
    ingest(stores)
    return stores


def ingest(dsns) -> int:
    parked = 0
    for store in ("cf_prod", "billing_prod", "subs"):
        parked += LegacySnapshotIngester(store=store, stores=Stores.from_dsns(dsns)).run().parked
    return parked


def recompute(dsns, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECOMPUTE_", "STRIPE_"))}
    env.update(PYTHONPATH=str(ROOT), RECOMPUTE_CF_PROD_DSN=dsns["cf_prod"], RECOMPUTE_SUBS_DSN=dsns["subs"],
               RECOMPUTE_BILLING_PROD_DSN=dsns["billing_prod"], RECOMPUTE_EVENTSTORE_DSN=dsns["eventstore"])
    done = subprocess.run([sys.executable, "-c", "from recompute.cli import main; main()", *args], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"recompute {' '.join(args)}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    return done


def plan_json(dsns, *args: str) -> dict:
    return orjson.loads(recompute(dsns, "plan", *AS_OF, "--json", *args).stdout)


def row_text(dsn: str, table: str, where: str) -> str:
    with psycopg.connect(dsn, options="-c TimeZone=UTC") as conn:
        return conn.execute(f"SELECT row_to_json(t)::text FROM {table} t WHERE {where}").fetchone()[0]


def touching(plan: dict, table: str, **key) -> list[dict]:
    return [c for c in plan["corrections"] if c["table"] == table and c["key"] == key]


def parked_vip_entitlement(world) -> None:
    """The Entitlements API writes a source recompute does not know, and turns sso off."""
    execute(world["cf_prod"], "UPDATE entitlements SET source = 'vip', enabled = false, "
            "updated_at = '2026-03-02T00:00:00Z' WHERE account_id = 'acc_000042' AND feature = 'sso'")
    assert ingest(world) == 1


def test_an_entitlement_whose_new_version_was_parked_is_held_not_rewritten(world):
    parked_vip_entitlement(world)
    plan = plan_json(world)
    sso = {"account_id": "acc_000042", "feature": "sso"}
    assert touching(plan, "cf_prod.entitlements", **sso) == []
    assert touching(plan, "cf_prod.entitlements", account_id="acc_000042", feature="api")  # the rest is corrected
    [held] = [h for h in plan["held"] if h["key"] == sso]
    assert (held["account_id"], held["table"], held["reason"]) == ("acc_000042", "cf_prod.entitlements", VIP)
    assert held["parked_at"]
    assert plan["accounts_checked"] == 3

    text = recompute(world, "plan", *AS_OF).stdout
    assert "held" in text and VIP in text


def test_apply_leaves_a_held_entitlement_byte_for_byte_as_its_owner_wrote_it(world):
    parked_vip_entitlement(world)
    where = "account_id = 'acc_000042' AND feature = 'sso'"
    before = row_text(world["cf_prod"], "entitlements", where)
    done = orjson.loads(recompute(world, "apply", *AS_OF, "--account", "acc_000042", "--json").stdout)
    assert [c["key"]["feature"] for c in done["corrections"] if c["table"] == "cf_prod.entitlements"] == ["api"]
    assert row_text(world["cf_prod"], "entitlements", where) == before
    assert orjson.loads(row_text(world["cf_prod"], "entitlements", "feature = 'api' AND account_id = 'acc_000042'"))[
        "enabled"] is True


def test_a_dunning_row_whose_stage_became_unknown_is_held_and_the_account_still_corrected(world):
    execute(world["billing_prod"], "UPDATE dunning SET stage = 'Retrying', updated_at = '2026-03-02T00:00:00Z'")
    assert ingest(world) == 1
    plan = plan_json(world)
    assert touching(plan, "billing_prod.dunning", account_id="acc_000043") == []
    assert touching(plan, "subs.subs_dunning", account_id="acc_000043")  # its other rows: corrected as usual
    assert {(h["account_id"], h["table"], h["reason"]) for h in plan["held"]} >= {
        ("acc_000043", "billing_prod.dunning", RETRYING)}

    before = row_text(world["billing_prod"], "dunning", "account_id = 'acc_000043'")
    recompute(world, "apply", *AS_OF, "--account", "acc_000043")
    assert row_text(world["billing_prod"], "dunning", "account_id = 'acc_000043'") == before


def test_explain_shows_the_accounts_parked_record_and_marks_the_row_it_holds(world):
    parked_vip_entitlement(world)
    explained = orjson.loads(recompute(world, "explain", "acc_000042", *AS_OF, "--json").stdout)
    [parked] = explained["parked"]
    assert (parked["table"], parked["key"], parked["reason"]) == (
        "cf_prod.entitlements", {"account_id": "acc_000042", "feature": "sso"}, VIP)
    assert parked["record"]["source"] == "vip" and parked["parked_at"] and parked["held"] is True
    assert [c["key"]["feature"] for c in explained["corrections"] if c["table"] == "cf_prod.entitlements"] == ["api"]
    assert [h["key"] for h in explained["held"]] == [{"account_id": "acc_000042", "feature": "sso"}]

    text = recompute(world, "explain", "acc_000042", *AS_OF).stdout
    assert "parked records (1)" in text and VIP in text and "held" in text


def test_an_account_on_a_plan_product_config_does_not_know_keeps_its_entitlements_held_with_the_reason(world):
    plan = plan_json(world)
    assert [c for c in plan["corrections"] if c["account_id"] == "acc_000044"] == []
    held = sorted((h["key"]["feature"], h["reason"], h["parked_at"]) for h in plan["held"]
                  if h["account_id"] == "acc_000044")
    assert held == [("api", NO_PLAN, None), ("sso", NO_PLAN, None)]
    explained = orjson.loads(recompute(world, "explain", "acc_000044", *AS_OF, "--json").stdout)
    assert explained["corrections"] == [] and {h["reason"] for h in explained["held"]} == {NO_PLAN}
