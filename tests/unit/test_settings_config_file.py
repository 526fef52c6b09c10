"""RECOMPUTE_CONFIG (cli.md "Configuration"): settings by their environment names and [owners]; the
environment wins; an unknown key or a bad value is one error naming the file, the key and the problem."""

from __future__ import annotations

import pytest

from recompute.settings import SettingsError, read_settings
from recompute.settings_shown import render_settings, shown_settings

SUBS = "host=db1 dbname=subs user=recompute password=hunter2"
LEGACY = {"RECOMPUTE_CF_PROD_DSN": "host=db1 dbname=cf", "RECOMPUTE_BILLING_PROD_DSN": "host=db1 dbname=billing"}


@pytest.fixture
def config(tmp_path):
    """Writes a config file and returns the environment naming it (plus the given variables)."""

    def write(text: str, **environ: str) -> dict[str, str]:
        path = tmp_path / "recompute.toml"
        path.write_text(text)
        return {"RECOMPUTE_CONFIG": str(path), "RECOMPUTE_DATA_DIR": str(tmp_path / "data"), **environ}

    return write


def test_a_setting_in_the_config_file_is_read_under_its_environment_name(config):
    settings = read_settings(config(f'RECOMPUTE_SUBS_DSN = "{SUBS}"\n', **LEGACY))
    assert settings.dsns["subs"] == SUBS
    assert settings.origins["RECOMPUTE_SUBS_DSN"].startswith("config file ")
    assert settings.origins["RECOMPUTE_CF_PROD_DSN"] == "environment"
    assert settings.origins["RECOMPUTE_EVENTSTORE_DSN"] == "default"


def test_the_environment_wins_over_the_config_file(config):
    settings = read_settings(config('RECOMPUTE_BROKER_URL = "amqp://file@mq//"\n',
                                    RECOMPUTE_BROKER_URL="amqp://env@mq//"))
    assert settings.broker_url == "amqp://env@mq//"
    assert settings.origins["RECOMPUTE_BROKER_URL"] == "environment"


def test_owners_are_the_raw_table_of_the_config_file(config):
    settings = read_settings(config('[owners]\n"subs.subs_dunning" = "A3"\n"subs.subs_account.bad_debt" = "collections"\n'))
    assert settings.owners == {"subs.subs_dunning": "A3", "subs.subs_account.bad_debt": "collections"}
    assert settings.origins["owners"].startswith("config file ")
    assert read_settings({"RECOMPUTE_DATA_DIR": "/tmp"}).owners == {}


def test_a_relative_rules_path_in_the_config_file_is_relative_to_the_file(config, tmp_path):
    (tmp_path / "rules.toml").write_text('version = "v2"\n')
    settings = read_settings(config('RECOMPUTE_RULES = "rules.toml"\n'))
    assert settings.rules_path == tmp_path / "rules.toml"


@pytest.mark.parametrize(("text", "says"), [
    ('RECOMPUTE_SUBS_DNS = "x"\n', "RECOMPUTE_SUBS_DNS: unknown key (did you mean 'RECOMPUTE_SUBS_DSN'?)"),
    ("RECOMPUTE_SUBS_DSN = 5432\n", "RECOMPUTE_SUBS_DSN: must be a string, not an integer"),
    ('RECOMPUTE_SUBS_DSN = "this is = not a dsn \'"\n', "RECOMPUTE_SUBS_DSN: not a libpq connection string"),
    ('STRIPE_WEBHOOK_SECRET = "sk_live_oops"\n', "STRIPE_WEBHOOK_SECRET: a signing secret starts with 'whsec_'"),
    ('RECOMPUTE_LOG_FORMAT = "yaml"\n', "RECOMPUTE_LOG_FORMAT: 'yaml' is not one of text, json"),
    ('[owners]\n"subs.subs_dunning" = 3\n', "[owners] 'subs.subs_dunning': must name an owner (a non-empty string)"),
    ('[owners.subs]\nsubs_dunning = "A3"\n', '[owners] subs: a nested table: quote a dotted key'),
    ("RECOMPUTE_SUBS_DSN = \n", "not TOML: "),
])
def test_a_bad_config_file_is_one_error_naming_the_file_the_key_and_the_problem(config, text, says):
    environ = config(text, **LEGACY, **({} if "SUBS_DSN =" in text else {"RECOMPUTE_SUBS_DSN": SUBS}))
    with pytest.raises(SettingsError) as raised:
        read_settings(environ)
    message = str(raised.value)
    assert message.startswith(f"RECOMPUTE_CONFIG: config file {environ['RECOMPUTE_CONFIG']}: ")
    assert says in message and "\n" not in message


def test_a_bad_value_from_the_environment_names_the_variable_not_the_file(config):
    with pytest.raises(SettingsError) as raised:
        read_settings(config("", STRIPE_WEBHOOK_SECRET="oops"))
    assert str(raised.value).startswith("STRIPE_WEBHOOK_SECRET: ")


def test_a_config_file_that_is_not_there_is_named(tmp_path):
    with pytest.raises(SettingsError, match=r"^RECOMPUTE_CONFIG: config file .*nowhere.toml: no such file$"):
        read_settings({"RECOMPUTE_CONFIG": str(tmp_path / "nowhere.toml")})


def test_settings_are_shown_with_their_secrets_masked_and_where_each_came_from(config):
    settings = read_settings(config(
        f'RECOMPUTE_SUBS_DSN = "{SUBS}"\nSTRIPE_API_KEY = "sk_live_51abcPRIVATE"\n[owners]\n"cf_prod.accounts" = "A1"\n',
        **LEGACY, RECOMPUTE_EVENTSTORE_DSN="postgresql://rc:s3cret@db2/events",
        RECOMPUTE_BROKER_URL="amqp://guest:topsecret@127.0.0.1:5672//", STRIPE_WEBHOOK_SECRET="whsec_abcPRIVATE"))
    lines = render_settings(settings)
    text = "\n".join(lines)
    for secret in ("hunter2", "PRIVATE", "s3cret", "topsecret"):
        assert secret not in text
    shown = {setting.name: setting for setting in shown_settings(settings)}
    assert set(shown["RECOMPUTE_SUBS_DSN"].value.split()) == {"host=db1", "dbname=subs", "user=recompute",
                                                              "password=****"}
    assert set(shown["RECOMPUTE_EVENTSTORE_DSN"].value.split()) == {"user=rc", "password=****", "host=db2",
                                                                    "dbname=events"}
    assert shown["STRIPE_API_KEY"].value == "sk_live_****"
    assert shown["STRIPE_WEBHOOK_SECRET"].value == "whsec_****"
    assert shown["RECOMPUTE_BROKER_URL"].value == "amqp://guest:****@127.0.0.1:5672//"
    assert shown["RECOMPUTE_SUBS_DSN"].origin.startswith("config file ")
    assert "RECOMPUTE_RULES = unset: the built-in rules v1  (default)" in lines
    assert any(line.startswith("[owners] cf_prod.accounts = A1  (config file ") for line in lines)
