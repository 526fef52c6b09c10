"""Building a synthetic fleet into real PostgreSQL databases (scratch ones, made and dropped here)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from simulation.drift import KIND_NAMES
from simulation.fleet import FleetManifest, build_fleet
from simulation.legacy_schema import LEGACY_COLUMNS
from simulation.oracle.expected_corrections import compare_corrections, correction_kind
from simulation.readback import oracle_corrections
from simulation.stripe_world import StripeWorld

pytestmark = pytest.mark.integration

ADMIN_DSN = os.environ.get("RECOMPUTE_TEST_ADMIN_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
NOW = datetime(2026, 3, 1, tzinfo=UTC)
STORES = ("cf_prod", "billing_prod", "subs")

# legacy-stores.md, transcribed: (column, information_schema type, nullable). Primary-key columns
# are NOT NULL in PostgreSQL even where the contract only says "primary key".
TS, TXT, NN, NULL = "timestamp with time zone", "text", False, True
CONTRACT = {
    "cf_prod": {
        "accounts": [("account_id", TXT, NN), ("name", TXT, NN), ("plan", TXT, NN), ("status", TXT, NN),
                     ("created_at", TS, NN), ("updated_at", TS, NN)],
        "product_config": [("plan", TXT, NN), ("feature", TXT, NN)],
        "entitlements": [("account_id", TXT, NN), ("feature", TXT, NN), ("enabled", "boolean", NN),
                         ("source", TXT, NN), ("updated_at", TS, NN)],
    },
    "billing_prod": {
        "invoices": [("invoice_id", TXT, NN), ("account_id", TXT, NN), ("stripe_invoice_id", TXT, NULL),
                     ("status", TXT, NN), ("currency", "character(3)", NN), ("amount_due", "bigint", NN),
                     ("amount_paid", "bigint", NN), ("due_at", TS, NULL), ("created_at", TS, NN),
                     ("updated_at", TS, NN)],
        "charges": [("charge_id", TXT, NN), ("account_id", TXT, NN), ("invoice_id", TXT, NULL),
                    ("stripe_charge_id", TXT, NULL), ("amount", "bigint", NN), ("status", TXT, NN),
                    ("failure_code", TXT, NULL), ("created_at", TS, NN)],
        "dunning": [("account_id", TXT, NN), ("stage", TXT, NN), ("stage_since", TS, NULL),
                    ("updated_at", TS, NN)],
        "schedules": [("invoice_id", TXT, NN), ("attempt", "integer", NN), ("account_id", TXT, NN),
                      ("scheduled_at", TS, NN), ("status", TXT, NN)],
    },
    "subs": {
        "subs_account": [("account_id", TXT, NN), ("billing_email", TXT, NULL), ("country", "character(2)", NULL),
                         ("currency", "character(3)", NULL), ("payment_method", TXT, NULL),
                         ("bad_debt", "boolean", NN), ("delinquent", "boolean", NN), ("updated_at", TS, NN)],
        "subs_customer": [("id", "bigint", NN), ("account_id", TXT, NN), ("stripe_customer_id", TXT, NN),
                          ("source", TXT, NN), ("created_at", TS, NN)],
        "subs_dunning": [("account_id", TXT, NN), ("stage", TXT, NN), ("attempt_count", "integer", NN),
                         ("next_action_at", TS, NULL), ("updated_at", TS, NN)],
        "subs_subscription": [("account_id", TXT, NN), ("stripe_subscription_id", TXT, NULL),
                              ("status", TXT, NN), ("current_period_end", TS, NULL), ("updated_at", TS, NN)],
        "subs_invoice": [("stripe_invoice_id", TXT, NN), ("account_id", TXT, NN), ("status", TXT, NN),
                         ("amount_remaining", "bigint", NN), ("attempt_count", "integer", NN),
                         ("updated_at", TS, NN)],
    },
}
PRIMARY_KEYS = {
    "accounts": ["account_id"], "product_config": ["plan", "feature"], "entitlements": ["account_id", "feature"],
    "invoices": ["invoice_id"], "charges": ["charge_id"], "dunning": ["account_id"],
    "schedules": ["invoice_id", "attempt"], "subs_account": ["account_id"], "subs_customer": ["id"],
    "subs_dunning": ["account_id"], "subs_subscription": ["account_id"], "subs_invoice": ["stripe_invoice_id"],
}


@pytest.fixture(scope="module")
def scratch_stores() -> Iterator:
    """A factory of fresh sets of the three databases; every one is dropped at the end."""
    try:
        admin = psycopg.connect(ADMIN_DSN, autocommit=True)
    except psycopg.OperationalError as e:  # pragma: no cover - depends on the machine
        pytest.skip(f"no PostgreSQL at {ADMIN_DSN}: {e}")
    made: list[str] = []
    base = psycopg.conninfo.conninfo_to_dict(ADMIN_DSN)

    def make() -> dict[str, str]:
        tag = f"fleet_t{os.getpid()}_{uuid.uuid4().hex[:8]}"
        dsns = {}
        for store in STORES:
            name = f"{tag}_{store}"
            admin.execute(f'CREATE DATABASE "{name}"')
            made.append(name)
            dsns[store] = psycopg.conninfo.make_conninfo(**{**base, "dbname": name})
        return dsns

    yield make
    for name in made:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def snapshot(dsns: dict[str, str]) -> dict[str, list[tuple]]:
    out = {}
    for store, tables in LEGACY_COLUMNS.items():
        with psycopg.connect(dsns[store]) as conn:
            for table, columns in tables.items():
                out[table] = conn.execute(f"SELECT * FROM {table} ORDER BY {', '.join(columns)}").fetchall()
    return out


@pytest.fixture(scope="module")
def fleet(scratch_stores, tmp_path_factory):
    """200 accounts, 20 drifting, built once for the tests that only read."""
    dsns = scratch_stores()
    stripe_dir = tmp_path_factory.mktemp("fleet200") / "stripe"
    manifest = build_fleet(dsns, accounts=200, seed=11, drifting=20, now=NOW, stripe_dir=stripe_dir)
    return dsns, stripe_dir, manifest, snapshot(dsns)


def test_the_tables_are_exactly_those_of_the_contract(fleet):
    dsns = fleet[0]
    for store, tables in CONTRACT.items():
        with psycopg.connect(dsns[store]) as conn:
            names = {r[0] for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
            assert names == set(tables)
            for table, columns in tables.items():
                found = conn.execute(
                    """SELECT column_name,
                              CASE WHEN data_type = 'character'
                                   THEN 'character(' || character_maximum_length || ')' ELSE data_type END,
                              is_nullable = 'YES'
                       FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position""",
                    (table,)).fetchall()
                assert found == columns, table
                pk = conn.execute(
                    """SELECT a.attname FROM pg_index i
                       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                       WHERE i.indrelid = %s::regclass AND i.indisprimary
                       ORDER BY array_position(i.indkey, a.attnum)""", (table,)).fetchall()
                assert [r[0] for r in pk] == PRIMARY_KEYS[table], table
    with psycopg.connect(dsns["billing_prod"]) as conn:
        unique = conn.execute(
            """SELECT kcu.column_name FROM information_schema.table_constraints tc
               JOIN information_schema.key_column_usage kcu USING (constraint_schema, constraint_name)
               WHERE tc.table_name = 'invoices' AND tc.constraint_type = 'UNIQUE'""").fetchall()
        assert unique == [("stripe_invoice_id",)]
    with psycopg.connect(dsns["subs"]) as conn:
        defaults = dict(conn.execute(
            """SELECT column_name, column_default FROM information_schema.columns
               WHERE column_default IS NOT NULL ORDER BY table_name, column_name""").fetchall())
        assert defaults["bad_debt"] == defaults["delinquent"] == "false"
        assert defaults["id"].startswith("nextval(")
        next_id = conn.execute("INSERT INTO subs_customer (account_id, stripe_customer_id, source, created_at) "
                               "VALUES ('acc_x', 'cus_x', 'setup', now()) RETURNING id").fetchone()[0]
        conn.rollback()
        assert next_id == 1 + conn.execute("SELECT max(id) FROM subs_customer").fetchone()[0]


def test_the_manifest_names_exactly_the_drifting_accounts_and_survives_a_round_trip(fleet, tmp_path):
    dsns, _, manifest, _ = fleet
    assert len(manifest.drifting_accounts) == len(set(manifest.drifting_accounts)) == 20
    assert manifest.drifting_accounts == sorted(manifest.drifting_accounts)
    assert {c["account_id"] for c in manifest.expected_corrections} == set(manifest.drifting_accounts)
    with psycopg.connect(dsns["cf_prod"]) as conn:
        accounts = [r[0] for r in conn.execute("SELECT account_id FROM accounts ORDER BY 1")]
    assert accounts == [f"acc_{n:06d}" for n in range(1, 201)]
    manifest.save(tmp_path / "manifest.json")
    assert FleetManifest.load(tmp_path / "manifest.json") == manifest


def test_the_stores_disagree_with_the_truth_exactly_where_the_manifest_says(fleet):
    dsns, stripe_dir, manifest, _ = fleet
    assert compare_corrections(manifest.expected_corrections, oracle_corrections(dsns, stripe_dir, NOW)) == []


def test_every_timestamp_is_timezone_aware_and_what_happened_did_not_happen_after_now(fleet):
    _, stripe_dir, _, rows = fleet
    happened = 0
    for tables in LEGACY_COLUMNS.values():
        for table, columns in tables.items():
            for row in rows[table]:
                for column, value in zip(columns, row, strict=True):
                    if isinstance(value, datetime):
                        assert value.tzinfo is not None, (table, column)
                    if column in ("created_at", "updated_at", "stage_since") and value is not None:
                        assert value <= NOW, (table, column, row)
                        happened += 1
    assert happened > 1000
    world = StripeWorld.load(stripe_dir)
    assert max(e["created"] for e in world.events) <= NOW.timestamp()


def test_stripe_objects_and_events_are_consistent(fleet):
    dsns, stripe_dir, _, rows = fleet
    world = StripeWorld.load(stripe_dir)
    accounts = {r[0] for r in rows["accounts"]}
    customers = {c["id"]: c for c in world.customers}
    live = {cid: c for cid, c in customers.items() if not c.get("deleted")}
    assert all(c["metadata"]["account_id"] in accounts for c in live.values())
    subscriptions = {s["id"] for s in world.subscriptions}
    for invoice in world.invoices:
        assert invoice["customer"] in live
        assert "subscription" not in invoice
        assert invoice["parent"]["subscription_details"]["subscription"] in subscriptions
    for sub in world.subscriptions:
        assert sub["customer"] in live
        assert "current_period_end" in sub["items"]["data"][0]
    assert len({e["id"] for e in world.events}) == len(world.events)
    latest: dict[str, dict] = {}
    for e in world.events:
        assert set(e) == {"id", "object", "api_version", "created", "type", "data", "livemode",
                          "pending_webhooks", "request"}
        assert e["api_version"] == "2025-03-31.basil" and e["object"] == "event"
        obj = e["data"]["object"]
        if obj["object"] == "customer":
            assert obj["metadata"]["account_id"] in accounts
        previous = latest.get(obj["id"])
        assert previous is None or previous["created"] < e["created"], "one object's events share a second"
        latest[obj["id"]] = e
    for obj in world.invoices + world.subscriptions + world.customers:
        last = latest[obj["id"]]
        if obj.get("deleted"):
            assert last["type"] == "customer.deleted"
        else:
            assert last["data"]["object"] == obj
    billing = {r[2] for r in rows["invoices"] if r[2] is not None}
    assert billing == {i["id"] for i in world.invoices}


def test_the_same_seed_builds_the_same_fleet(scratch_stores, fleet, tmp_path):
    dsns, stripe_dir, manifest, rows = fleet
    again = build_fleet(scratch_stores(), accounts=200, seed=11, drifting=20, now=NOW,
                        stripe_dir=tmp_path / "stripe")
    assert again == manifest
    for name in ("events", "customers", "subscriptions", "invoices", "meta"):
        suffix = "json" if name == "meta" else "jsonl"
        assert (tmp_path / "stripe" / f"{name}.{suffix}").read_bytes() == (stripe_dir / f"{name}.{suffix}").read_bytes()
    other = build_fleet(scratch_stores(), accounts=200, seed=12, drifting=20, now=NOW,
                        stripe_dir=tmp_path / "other")
    assert other.expected_corrections != manifest.expected_corrections


def test_the_same_seed_fills_the_same_rows(scratch_stores, fleet, tmp_path):
    _, _, _, rows = fleet
    dsns = scratch_stores()
    build_fleet(dsns, accounts=200, seed=11, drifting=20, now=NOW, stripe_dir=tmp_path / "stripe")
    assert snapshot(dsns) == rows


def test_a_500_account_fleet_with_60_drifting_shows_every_kind_of_drift(scratch_stores, tmp_path):
    dsns = scratch_stores()
    manifest = build_fleet(dsns, accounts=500, seed=3, drifting=60, now=NOW, stripe_dir=tmp_path / "stripe")
    assert len(manifest.drifting_accounts) == 60
    kinds = {correction_kind(c) for c in manifest.expected_corrections}
    assert kinds == set(KIND_NAMES)
    assert {k for ks in manifest.drift_kinds.values() for k in ks} == set(KIND_NAMES)
    assert compare_corrections(manifest.expected_corrections,
                               oracle_corrections(dsns, tmp_path / "stripe", NOW)) == []
