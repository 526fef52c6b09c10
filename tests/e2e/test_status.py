"""`recompute status`: the log, each source's checkpoint and age, parked records and the outbox, writing nothing."""

from __future__ import annotations

import json

import pytest

from eventlog.stores import Stores
from tests.support.cli import configured, nothing_written, recompute
from tests.support.legacy import an_account, create_stores, execute

pytestmark = pytest.mark.integration


def test_status_of_a_fresh_event_store_reports_nothing_ingested_and_writes_nothing(stores):
    create_stores(stores)
    result = recompute("status", "--json", env=configured(stores))
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["log"] == {"events": 0, "accounts": 0} and status["sources"] == []
    assert status["parked_records"] == 0 and status["outbox"]["waiting"] == 0
    assert nothing_written(stores["eventstore"])


def test_status_counts_what_ingest_recorded_and_parked_per_source(stores):
    create_stores(stores)
    an_account(stores, "acc_000001")
    an_account(stores, "acc_000002")
    execute(stores["cf_prod"], "INSERT INTO accounts VALUES ('acc_000003', 'Bad', 'pro', 'frozen', now(), now())")
    assert recompute("ingest", "--source", "cf_prod", env=configured(stores)).returncode == 0

    status = json.loads(recompute("status", "--json", env=configured(stores)).stdout)

    assert status["log"] == {"events": 2, "accounts": 2}
    assert "legacy:cf_prod.accounts" in {s["source"] for s in status["sources"]}
    assert all(s["age_seconds"] >= 0 for s in status["sources"])
    assert status["parked_records"] == 1 and status["parked_by_table"] == {"cf_prod accounts": 1}
    assert status["last_apply"] is None and status["accounts_disagreeing"] is None
    text = recompute("status", env=configured(stores)).stdout
    assert "parked records: 1" in text and "legacy:cf_prod.accounts" in text


def test_status_counts_stripe_objects_waiting_for_their_account_until_a_mapping_records_them(stores):
    from eventlog.own_tables import ensure_own_schema
    from ingestion.stripe.ingester import StripeIngester
    from tests.support.stripe_world import NOW, a_customer, an_event, an_invoice

    create_stores(stores)
    ensure_own_schema(stores["eventstore"])
    webhooks = StripeIngester(reader=None, stores=Stores.from_dsns(stores))
    webhooks.record_deliveries([an_event("evt_inv", "invoice.payment_failed", an_invoice(customer_id="cus_new"), NOW)])

    waiting = json.loads(recompute("status", "--json", env=configured(stores)).stdout)
    assert (waiting["stripe_waiting"], waiting["parked_records"]) == (1, 1)

    webhooks.record_deliveries([an_event("evt_cus", "customer.created", a_customer("cus_new"), NOW + 1)])

    recorded = json.loads(recompute("status", "--json", env=configured(stores)).stdout)
    assert (recorded["stripe_waiting"], recorded["parked_records"]) == (0, 0)


def test_status_before_any_backfill_shows_no_projection_and_the_default_rules_as_active(stores, tmp_path):
    from domain.rules import parse_rules
    from tests.support.rules import SPEC_V1

    create_stores(stores)
    an_account(stores)
    assert recompute("ingest", "--source", "cf_prod", env=configured(stores)).returncode == 0
    status = json.loads(recompute("status", "--json", env=configured(stores)).stdout)
    assert status["projection"] is None
    assert status["active_rules"] == {"version": "v1", "digest": "2742993c6f6b6a8b", "source": "built in"}
    v2 = tmp_path / "v2.toml"
    v2.write_text(SPEC_V1.replace('version = "v1"', 'version = "v2"').replace("= 21", "= 30"))

    named = json.loads(recompute("status", "--json", env={**configured(stores), "RECOMPUTE_RULES": str(v2)}).stdout)

    assert named["active_rules"] == {"version": "v2", "digest": parse_rules(v2.read_text()).digest,
                                     "source": "RECOMPUTE_RULES"}
    assert "projection: none (no backfill applied yet); active rules v1" in recompute(
        "status", env=configured(stores)).stdout


def test_status_shows_the_active_generation_its_accounts_and_the_log_position_its_partitions_reflect(stores):
    from tests.e2e.test_active_rules import V2, an_active_generation

    create_stores(stores)
    an_account(stores)
    assert recompute("ingest", "--source", "cf_prod", env=configured(stores)).returncode == 0
    assert recompute("plan", env=configured(stores)).returncode == 0  # keeps the account's facts
    generation = an_active_generation(stores["eventstore"])
    execute(stores["eventstore"], "INSERT INTO read_model_partition (generation, partition, accounts, events, position) "
            "VALUES (%s, 0, 1, 1, 1), (%s, 1, 0, 0, 0)", (generation, generation))

    status = json.loads(recompute("status", "--json", env=configured(stores)).stdout)

    projection = status["projection"]
    assert {k: projection[k] for k in ("generation", "rules_version", "rules_digest", "as_of", "accounts",
                                       "partitions", "partitions_built", "position")} == {
        "generation": generation, "rules_version": "v2", "rules_digest": V2.digest,
        "as_of": "2026-03-01T00:00:00+00:00", "accounts": 1, "partitions": 32, "partitions_built": 2, "position": 1}
    assert projection["built_at"] and projection["activated_at"]
    assert status["active_rules"] == {"version": "v2", "digest": V2.digest, "source": f"generation {generation}"}
    assert status["kept_facts"] == {"accounts": 1, "current": 1}
    text = recompute("status", env=configured(stores)).stdout
    assert f"projection: generation {generation}, rules v2 (digest {V2.digest})" in text and "log position 1" in text


def test_status_of_a_generation_the_followers_keep_counts_its_states_and_shows_their_position(stores):
    from tests.e2e.test_active_rules import an_active_generation

    create_stores(stores)
    an_account(stores)
    assert recompute("ingest", "--source", "cf_prod", env=configured(stores)).returncode == 0
    generation = an_active_generation(stores["eventstore"])  # as `project` makes one: no partition built
    execute(stores["eventstore"], "INSERT INTO read_model_state (generation, account_id, partition, state, "
            "stream_version, as_of) VALUES (%s, 'acc_1', 3, '{}', 1, now()), (%s, 'acc_2', 5, '{}', 1, now())",
            (generation, generation))
    execute(stores["eventstore"], "CREATE TABLE IF NOT EXISTS follow_position (generation bigint NOT NULL, "
            "partition integer NOT NULL, position bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), "
            "PRIMARY KEY (generation, partition))")
    execute(stores["eventstore"], "INSERT INTO follow_position (generation, partition, position) VALUES "
            "(%s, 3, 7), (%s, 5, 9)", (generation, generation))

    projection = json.loads(recompute("status", "--json", env=configured(stores)).stdout)["projection"]

    assert (projection["accounts"], projection["partitions_built"], projection["position"]) == (2, 0, 9)
