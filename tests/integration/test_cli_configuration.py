"""A missing or unusable setting is one line that names the variable, exit code 2, and nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from simulation.stripe_standin import StripeStandIn
from tests.support.legacy import create_stores
from tests.support.stripe_world import API_KEY, a_world

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def recompute(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from recompute.cli import main; main()", *args],
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True,
                          timeout=120)


def configured(stores) -> dict[str, str]:
    return {"RECOMPUTE_CF_PROD_DSN": stores["cf_prod"], "RECOMPUTE_BILLING_PROD_DSN": stores["billing_prod"],
            "RECOMPUTE_SUBS_DSN": stores["subs"], "RECOMPUTE_EVENTSTORE_DSN": stores["eventstore"]}


def nothing_written(eventstore: str) -> bool:
    """Not even our own tables were created."""
    with psycopg.connect(eventstore) as conn:
        return conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("RECOMPUTE_CF_PROD_DSN", "host=127.0.0.1 port=1 user=postgres dbname=x", "cannot connect"),
        ("RECOMPUTE_SUBS_DSN", "this is = not a dsn '", "not a libpq connection string"),
        ("RECOMPUTE_RULES", "/nonexistent/rules.toml", "no rules file"),
        ("RECOMPUTE_STRIPE_API_BASE", "ftp://example", "not an http(s) address"),
        ("STRIPE_WEBHOOK_SECRET", "sk_live_oops", "starts with 'whsec_'"),
    ],
)
def test_an_unusable_setting_is_one_line_naming_the_variable_with_exit_code_2(stores, variable, value, says):
    create_stores(stores)
    result = recompute("ingest", env={**configured(stores), variable: value})
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert variable in line and says in line
    assert nothing_written(stores["eventstore"])


def test_a_stripe_key_that_stripe_refuses_stops_the_run_before_anything_is_written(stores):
    create_stores(stores)
    with StripeStandIn(a_world(), api_key=API_KEY) as stripe:
        result = recompute("ingest", env={**configured(stores), "STRIPE_API_KEY": "sk_test_wrong",
                                          "RECOMPUTE_STRIPE_API_BASE": stripe.base_url})
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "STRIPE_API_KEY" in line
    assert nothing_written(stores["eventstore"])


def test_bad_usage_exits_with_code_2(stores):
    result = recompute("ingest", "--source", "mainframe", env=configured(stores))
    assert result.returncode == 2 and "mainframe" in result.stderr


def test_a_bad_rules_file_named_by_the_environment_names_the_variable_and_writes_nothing(stores, tmp_path):
    create_stores(stores)
    rules = tmp_path / "rules.toml"
    rules.write_text('version = "v2"\nbad_debt_days_overdue = -1\n')
    result = recompute("plan", env={**configured(stores), "RECOMPUTE_RULES": str(rules)})
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("recompute: RECOMPUTE_RULES: rules file") and "bad_debt_days_overdue" in line
    assert nothing_written(stores["eventstore"])


def test_plan_before_any_ingest_says_to_ingest_first(stores):
    create_stores(stores)
    result = recompute("plan", "--json", env=configured(stores))
    assert result.returncode == 0
    assert '"accounts_checked": 0' in result.stdout
    assert "run `recompute ingest` first" in result.stderr
