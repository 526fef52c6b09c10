"""A missing or unusable setting is one line that names the variable, exit code 2, and nothing written."""

from __future__ import annotations

import pytest

from simulation.stripe_standin import StripeStandIn
from tests.support.cli import configured, nothing_written, recompute
from tests.support.legacy import create_stores
from tests.support.stripe_world import API_KEY, a_world

pytestmark = pytest.mark.integration
@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("RECOMPUTE_CF_PROD_DSN", "host=127.0.0.1 port=1 user=postgres dbname=x", "cannot connect"),
        ("RECOMPUTE_SUBS_DSN", "this is = not a dsn '", "not a libpq connection string"),
        ("RECOMPUTE_RULES", "/nonexistent/rules.toml", "no rules file"),
        ("RECOMPUTE_STRIPE_API_BASE", "ftp://example", "not an http(s) address"),
        ("STRIPE_WEBHOOK_SECRET", "sk_live_oops", "starts with 'whsec_'"),
        ("RECOMPUTE_LOG_FORMAT", "xml", "'xml' is not one of text, json"),
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


# -- defect 8 of the "nothing lost, nothing half-answered" issue: each is one line, naming what, exit 2 --

BROKER_REFUSALS = [
    ("amqp://guest:wrong@127.0.0.1:5672//", "refused"),          # wrong password
    ("amqp://guest:guest@127.0.0.1:5672/no_such_vhost", "vhost"),  # a vhost the broker does not have
]


@pytest.mark.broker
@pytest.mark.parametrize(("url", "says"), BROKER_REFUSALS)
def test_apply_with_broker_credentials_the_broker_refuses_names_the_variable_and_writes_nothing(stores, url, says):
    create_stores(stores)
    result = recompute("apply", env={**configured(stores), "RECOMPUTE_BROKER_URL": url})
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("recompute: RECOMPUTE_BROKER_URL:") and says in line
    assert "wrong" not in line  # the password is not echoed
    assert nothing_written(stores["eventstore"])


@pytest.mark.broker
@pytest.mark.parametrize(("url", "says"), BROKER_REFUSALS)
def test_relay_with_nothing_waiting_still_checks_the_broker(stores, url, says):
    create_stores(stores)
    result = recompute("relay", env={**configured(stores), "RECOMPUTE_BROKER_URL": url})
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("recompute: RECOMPUTE_BROKER_URL:") and says in line


def test_relay_with_nothing_waiting_and_the_broker_down_fails_saying_so(stores):
    create_stores(stores)
    result = recompute("relay", env={**configured(stores), "RECOMPUTE_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//"})
    assert result.returncode == 1, result.stderr
    assert "unreachable" in result.stderr


def test_a_data_dir_that_is_a_file_is_one_line_naming_the_variable(tmp_path):
    not_a_dir = tmp_path / "data"
    not_a_dir.write_text("")
    unset = {variable: "" for variable in ("RECOMPUTE_CF_PROD_DSN", "RECOMPUTE_BILLING_PROD_DSN",
                                            "RECOMPUTE_SUBS_DSN", "RECOMPUTE_EVENTSTORE_DSN")}
    result = recompute("plan", env={**unset, "RECOMPUTE_DATA_DIR": str(not_a_dir)})
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("recompute: RECOMPUTE_DATA_DIR:") and "not a directory" in line


def test_legacy_databases_without_their_tables_name_the_variable_and_the_missing_tables(stores):
    result = recompute("ingest", "--source", "cf_prod", env=configured(stores))  # empty databases
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("recompute: RECOMPUTE_CF_PROD_DSN:") and "accounts" in line
    assert nothing_written(stores["eventstore"])


def test_one_legacy_store_configured_and_the_others_embedded_is_refused(stores):
    create_stores(stores)
    env = {**configured(stores), "RECOMPUTE_BILLING_PROD_DSN": "", "RECOMPUTE_SUBS_DSN": ""}
    result = recompute("plan", env=env)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "RECOMPUTE_BILLING_PROD_DSN" in line and "RECOMPUTE_CF_PROD_DSN" in line and "all three" in line
    assert nothing_written(stores["eventstore"])


@pytest.mark.parametrize("instant", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_an_as_of_outside_the_instants_recompute_can_compute_with_is_a_usage_error(stores, instant):
    create_stores(stores)
    result = recompute("plan", "--as-of", instant, env=configured(stores))
    assert result.returncode == 2, result.stderr
    assert "--as-of" in result.stderr and "Traceback" not in result.stderr
    assert nothing_written(stores["eventstore"])


def test_plan_writes_nothing_not_even_our_own_tables(stores):
    create_stores(stores)
    result = recompute("plan", "--json", env=configured(stores))
    assert result.returncode == 0, result.stderr
    assert nothing_written(stores["eventstore"])


def test_plan_of_an_account_the_log_does_not_hold_says_so_when_the_log_is_not_empty(stores):
    from tests.support.legacy import an_account

    create_stores(stores)
    an_account(stores)
    assert recompute("ingest", "--source", "cf_prod", env=configured(stores)).returncode == 0
    result = recompute("plan", "--account", "NOPE", env=configured(stores))
    assert result.returncode == 1, result.stderr
    assert "no events for account 'NOPE'" in result.stderr
    assert "run `recompute ingest` first" not in result.stderr


# -- RECOMPUTE_CONFIG (issue 22): the settings by their names in a TOML file; the environment wins --

def test_the_stores_named_in_the_config_file_are_the_ones_ingested(stores, tmp_path):
    create_stores(stores)
    config = tmp_path / "recompute.toml"
    config.write_text("".join(f'{name} = "{dsn}"\n' for name, dsn in configured(stores).items()))
    result = recompute("ingest", env={"RECOMPUTE_CONFIG": str(config)})
    assert result.returncode == 0, result.stderr
    assert not nothing_written(stores["eventstore"])


@pytest.mark.parametrize("command", [("ingest",), ("relay",), ("status",)])
def test_an_unknown_key_in_the_config_file_is_one_line_naming_the_file_and_the_key_and_writes_nothing(
        stores, tmp_path, command):
    create_stores(stores)
    config = tmp_path / "recompute.toml"
    config.write_text('RECOMPUTE_BROKER_ULR = "amqp://guest:guest@127.0.0.1:5672//"\n')
    result = recompute(*command, env={**configured(stores), "RECOMPUTE_CONFIG": str(config)})
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line == (f"recompute: RECOMPUTE_CONFIG: config file {config}: RECOMPUTE_BROKER_ULR: unknown key "
                    "(did you mean 'RECOMPUTE_BROKER_URL'?)")
    assert nothing_written(stores["eventstore"])


@pytest.mark.parametrize(("owners", "says"), [
    ('"subs.subs_dunnings" = "A3"', "'subs.subs_dunnings': unknown table 'subs.subs_dunnings' (one of "),
    ('"subs.subs_account.billing_email" = "A1"',
     "'subs.subs_account.billing_email': unknown column 'billing_email' of subs.subs_account (one of bad_debt, "
     "delinquent)"),
])
def test_an_owner_for_a_table_or_column_recompute_does_not_compare_is_one_line_and_writes_nothing(
        stores, tmp_path, owners, says):
    create_stores(stores)
    config = tmp_path / "recompute.toml"
    config.write_text(f"[owners]\n{owners}\n")
    result = recompute("plan", env={**configured(stores), "RECOMPUTE_CONFIG": str(config)})
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"recompute: RECOMPUTE_CONFIG: config file {config}: [owners] {says}")
    assert nothing_written(stores["eventstore"])
