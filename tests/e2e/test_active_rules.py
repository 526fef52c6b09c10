"""The active rules on the command line (cli.md "Rule changes"): once a generation is active, plan,
explain and apply run under its rules; apply refuses other rules and says to run backfill."""

from __future__ import annotations

import json

import psycopg
import pytest

from domain.rules import parse_rules
from tests.support.cli import configured, recompute
from tests.support.legacy import an_account, create_stores
from tests.support.rules import SPEC_V1

pytestmark = pytest.mark.integration
V2_TEXT = SPEC_V1.replace('version = "v1"', 'version = "v2"').replace("days_overdue_at_least = 21",
                                                                       "days_overdue_at_least = 30")
V2 = parse_rules(V2_TEXT)
AS_OF = ("--as-of", "2026-03-01T00:00:00Z")


def an_active_generation(eventstore: str, text: str = V2_TEXT) -> int:
    """What `backfill --apply` leaves: a built generation, active."""
    rules = parse_rules(text)
    with psycopg.connect(eventstore) as conn:
        return conn.execute(
            "INSERT INTO read_model_generation (rules_version, rules_digest, rules_text, as_of, partitions, built_at,"
            " activated_at, active) VALUES (%s, %s, %s, '2026-03-01Z', 32, now(), now(), true) RETURNING id",
            (rules.version, rules.digest, text)).fetchone()[0]


def audit_rows(eventstore: str) -> int:
    with psycopg.connect(eventstore) as conn:
        return conn.execute("SELECT count(*) FROM apply_run").fetchone()[0]


@pytest.fixture
def ingested(stores):
    create_stores(stores)
    an_account(stores)
    assert recompute("ingest", env=configured(stores)).returncode == 0
    return stores


def test_before_any_backfill_apply_refuses_rules_other_than_the_default_ones(ingested, tmp_path):
    v2 = tmp_path / "v2.toml"
    v2.write_text(V2_TEXT)
    env = configured(ingested)

    planned = recompute("plan", *AS_OF, "--json", "--rules", str(v2), env=env)
    refused = recompute("apply", *AS_OF, "--rules", str(v2), env=env)

    assert planned.returncode == 0 and json.loads(planned.stdout)["rules_version"] == "v2"
    assert refused.returncode == 2 and audit_rows(ingested["eventstore"]) == 0
    [line] = refused.stderr.strip().splitlines()
    assert line == (f"recompute: --rules: rules v2 (digest {V2.digest}) are not the active rules v1 (digest "
                    "2742993c6f6b6a8b; built in, no backfill applied yet): run `recompute backfill --rules FILE "
                    "--apply` to make them active")
    applied = recompute("apply", *AS_OF, "--rules", str(v2), "--json", env={**env, "RECOMPUTE_RULES": str(v2)})
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["rules_version"] == "v2"


def test_once_a_generation_is_active_commands_without_rules_run_under_it_and_apply_refuses_others(ingested, tmp_path):
    generation = an_active_generation(ingested["eventstore"])
    v1 = tmp_path / "v1.toml"
    v1.write_text(SPEC_V1)
    env = configured(ingested)

    planned = recompute("plan", *AS_OF, "--json", env=env)
    explained = recompute("explain", "acc_000042", *AS_OF, "--json", env=env)
    tried = recompute("plan", *AS_OF, "--json", "--rules", str(v1), env=env)
    refused = recompute("apply", *AS_OF, "--rules", str(v1), env=env)
    overruled = recompute("plan", *AS_OF, "--json", env={**env, "RECOMPUTE_RULES": str(v1)})
    refused_env = recompute("apply", *AS_OF, env={**env, "RECOMPUTE_RULES": str(v1)})

    assert [json.loads(r.stdout)["rules_version"] for r in (planned, explained, tried, overruled)] == \
        ["v2", "v2", "v1", "v2"]
    assert refused.returncode == refused_env.returncode == 2 and audit_rows(ingested["eventstore"]) == 0
    assert f"are not the active rules v2 (digest {V2.digest}; generation {generation})" in refused.stderr
    assert refused_env.stderr.startswith("recompute: RECOMPUTE_RULES: rules v1")
    [warning] = overruled.stderr.strip().splitlines()
    assert warning.startswith("recompute: RECOMPUTE_RULES names rules v1") and "running under the active rules" in warning
    applied = recompute("apply", *AS_OF, "--json", env=env)
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["rules_version"] == "v2"
