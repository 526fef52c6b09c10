"""No DSN password, Stripe key, webhook secret or broker password in any output (cli.md "Least
privilege", issue 21): every run through tests/support/cli.py is checked for them (its `no_secrets`);
here the commands that print settings, servers and errors run with all of them configured."""

from __future__ import annotations

import psycopg.conninfo
import pytest

from simulation.harness.databases import PASSWORD
from simulation.harness.secrets import leaked, secrets_of
from simulation.stripe_standin import StripeStandIn
from tests.support.cli import configured, recompute
from tests.support.follow import a_calm_world
from tests.support.serve import SECRET
from tests.support.stripe_world import API_KEY, a_world

pytestmark = [pytest.mark.integration, pytest.mark.broker, pytest.mark.slow]
BROKER = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture
def env(stores):
    a_calm_world(stores, accounts=3)
    return {**configured(stores), "STRIPE_WEBHOOK_SECRET": SECRET, "RECOMPUTE_BROKER_URL": BROKER}


def test_the_test_dsns_carry_a_password_for_the_runs_to_keep_to_themselves(env):
    assert secrets_of(env)["RECOMPUTE_SUBS_DSN"] == PASSWORD
    assert leaked(f"dsn password={PASSWORD}", env) == [f"RECOMPUTE_{s}_DSN" for s in
                                                         ("BILLING_PROD", "CF_PROD", "EVENTSTORE", "SUBS")]


def test_check_shows_each_setting_with_its_secrets_masked(env):
    with StripeStandIn(a_world(), api_key=API_KEY) as stripe:
        full = {**env, "STRIPE_API_KEY": API_KEY, "RECOMPUTE_STRIPE_API_BASE": stripe.base_url}
        shown = recompute("check", env=full)
        recompute("ingest", env=full)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    lines = dict(line.removesuffix(" (environment)").split(" = ", 1) for line in shown.stdout.splitlines()
                 if " = " in line)
    assert "password=****" in lines["RECOMPUTE_SUBS_DSN"]
    assert psycopg.conninfo.conninfo_to_dict(lines["RECOMPUTE_SUBS_DSN"].replace("****", PASSWORD)) == \
        psycopg.conninfo.conninfo_to_dict(env["RECOMPUTE_SUBS_DSN"])
    assert lines["STRIPE_API_KEY"] == "sk_****" and lines["STRIPE_WEBHOOK_SECRET"] == "whsec_****"
    assert lines["RECOMPUTE_BROKER_URL"] == "amqp://guest:****@127.0.0.1:5672//"


@pytest.mark.parametrize("args", [
    ("check", "--json"), ("status",), ("status", "--json"), ("plan", "--json"), ("apply", "--json", "--force"),
    ("explain", "acc_000001"), ("cdc", "status"), ("relay",),
])
def test_commands_print_no_secret(env, args):
    recompute("ingest", env=env)
    recompute(*args, env=env)  # the runner fails the test on a secret in what it printed


def test_errors_naming_a_server_or_a_broker_print_no_secret(env, tmp_path):
    unreachable = {**env, "RECOMPUTE_CF_PROD_DSN": f"host=127.0.0.1 port=1 user=postgres password={PASSWORD} dbname=x"}
    assert "cannot connect" in recompute("plan", env=unreachable).stderr
    assert "cannot connect" in recompute("check", env=unreachable).stdout
    refused = recompute("apply", env={**env, "RECOMPUTE_BROKER_URL": "amqp://guest:wrong-broker-pw@127.0.0.1:5672//"})
    assert refused.returncode == 2 and "RECOMPUTE_BROKER_URL" in refused.stderr
    broken = recompute("plan", env={**env, "RECOMPUTE_SUBS_DSN": f"host=127.0.0.1 password='{PASSWORD}"})
    assert broken.returncode == 2 and "RECOMPUTE_SUBS_DSN" in broken.stderr


def test_the_report_and_a_saved_plan_hold_no_secret(env, tmp_path):
    recompute("ingest", env=env)
    recompute("report", "--html", str(tmp_path / "r.html"), env=env)
    recompute("plan", "--out", str(tmp_path / "p.json"), env=env)
    for written in ("r.html", "p.json"):
        assert leaked((tmp_path / written).read_text(), env) == []
