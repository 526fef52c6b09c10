"""Configuration, read in one place from the environment and `RECOMPUTE_CONFIG` (cli.md, "Configuration").

Every setting is read by its environment name: from the environment when set there (non-empty), else
from the config file (`recompute/config_file.py`), else its default; `Settings.origins` records which.
Nothing here opens a connection; `SettingsError` names the variable that is missing or unusable (a
value from the config file: the file and the key), and the command line turns it into one line and
exit code 2.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from domain.legacy_tables import STORES
from eventlog.stores import ProgrammingError, parse_dsn
from recompute.config_file import OWNERS, ConfigFileProblem, read_config_file

DSN_VARIABLES = {
    "cf_prod": "RECOMPUTE_CF_PROD_DSN",
    "billing_prod": "RECOMPUTE_BILLING_PROD_DSN",
    "subs": "RECOMPUTE_SUBS_DSN",
    "eventstore": "RECOMPUTE_EVENTSTORE_DSN",
}
CONFIG_VARIABLE = "RECOMPUTE_CONFIG"
# Every setting, by its environment name: what a config file may hold (besides [owners]).
SETTING_NAMES = (*DSN_VARIABLES.values(), "RECOMPUTE_RULES", "STRIPE_API_KEY", "RECOMPUTE_STRIPE_API_BASE",
                 "STRIPE_WEBHOOK_SECRET", "RECOMPUTE_DASK_SCHEDULER", "RECOMPUTE_BROKER_URL", "RECOMPUTE_LOG_FORMAT",
                 "RECOMPUTE_DATA_DIR")
PATH_SETTINGS = ("RECOMPUTE_RULES", "RECOMPUTE_DATA_DIR")
LOG_FORMATS = ("text", "json")
ENVIRONMENT, DEFAULT = "environment", "default"


class SettingsError(Exception):
    """A setting is missing or unusable; the message starts with the variable's name."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


@dataclass(frozen=True)
class Settings:
    dsns: Mapping[str, str | None]  # store or "eventstore" -> libpq string; None: embedded default
    rules_path: Path | None
    stripe_api_key: str | None
    stripe_api_base: str | None
    stripe_webhook_secret: str | None
    broker_url: str | None
    data_dir: Path  # where the embedded default keeps its PostgreSQL
    dask_scheduler: str | None = None  # RECOMPUTE_DASK_SCHEDULER; None: a LocalCluster of --workers
    log_format: str = "text"  # RECOMPUTE_LOG_FORMAT: "text" or "json"
    owners: Mapping[str, str] = field(default_factory=dict)  # the config file's [owners], as written
    # where each setting came from, by its environment name (and "owners"): "environment", "config file PATH"
    # or "default"
    origins: Mapping[str, str] = field(default_factory=dict)
    configured: Mapping[str, str] = field(default_factory=dict)  # the value of each one set, as written

    @property
    def needs_embedded(self) -> bool:
        return any(dsn is None for dsn in self.dsns.values())


def read_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    config_path = env.get(CONFIG_VARIABLE) or None
    file = None
    if config_path is not None:
        try:
            file = read_config_file(Path(config_path), SETTING_NAMES)
        except ConfigFileProblem as problem:
            raise SettingsError(CONFIG_VARIABLE, f"config file {config_path}: {problem}") from None
    configured: dict[str, str] = {}
    origins = dict.fromkeys(SETTING_NAMES, DEFAULT)
    for name in SETTING_NAMES:
        if env.get(name):
            configured[name], origins[name] = env[name], ENVIRONMENT
        elif file is not None and file.settings.get(name):
            configured[name] = _from_file(file.path, name, file.settings[name])
            origins[name] = f"config file {file.path}"
    try:
        settings = _settings(configured, env)
    except SettingsError as error:
        if origins.get(error.variable, DEFAULT) not in (ENVIRONMENT, DEFAULT):
            raise SettingsError(CONFIG_VARIABLE, f"config file {config_path}: {error}") from None
        raise
    origins[OWNERS] = f"config file {file.path}" if file is not None else DEFAULT
    return dataclasses.replace(settings, owners=file.owners if file else {}, origins=origins, configured=configured)


def _from_file(path: Path, name: str, value: str) -> str:
    """A relative path in the config file is relative to the file's folder, not to where recompute runs."""
    return str(path.parent / value) if name in PATH_SETTINGS and not Path(value).is_absolute() else value


def _settings(values: Mapping[str, str], env: Mapping[str, str]) -> Settings:
    """The settings from their values by name (each non-empty, from the environment or the file)."""
    dsns: dict[str, str | None] = {}
    for store, variable in DSN_VARIABLES.items():
        value = values.get(variable)
        if value is not None:
            _check_conninfo(variable, value)
        dsns[store] = value
    _all_legacy_or_none(dsns)

    rules = values.get("RECOMPUTE_RULES")
    if rules is not None and not Path(rules).is_file():
        raise SettingsError("RECOMPUTE_RULES", f"no rules file at {rules!r}")

    api_base = values.get("RECOMPUTE_STRIPE_API_BASE")
    if api_base is not None and not api_base.startswith(("http://", "https://")):
        raise SettingsError("RECOMPUTE_STRIPE_API_BASE", f"not an http(s) address: {api_base!r}")

    secret = values.get("STRIPE_WEBHOOK_SECRET")
    if secret is not None and not secret.startswith("whsec_"):
        raise SettingsError("STRIPE_WEBHOOK_SECRET", "a signing secret starts with 'whsec_'")

    scheduler = values.get("RECOMPUTE_DASK_SCHEDULER")
    if scheduler is not None and "://" not in scheduler:
        raise SettingsError("RECOMPUTE_DASK_SCHEDULER", f"not a scheduler address like tcp://host:8786: {scheduler!r}")

    default_home = Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "recompute"
    data_dir = Path(values.get("RECOMPUTE_DATA_DIR") or default_home)
    if any(dsn is None for dsn in dsns.values()):
        _check_data_dir(data_dir)
    log_format = values.get("RECOMPUTE_LOG_FORMAT", "text")
    if log_format not in LOG_FORMATS:
        raise SettingsError("RECOMPUTE_LOG_FORMAT", f"{log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    return Settings(
        dsns=dsns,
        rules_path=Path(rules) if rules else None,
        stripe_api_key=values.get("STRIPE_API_KEY"),
        stripe_api_base=api_base,
        stripe_webhook_secret=secret,
        broker_url=values.get("RECOMPUTE_BROKER_URL"),
        data_dir=data_dir,
        dask_scheduler=scheduler,
        log_format=log_format,
    )


def _all_legacy_or_none(dsns: Mapping[str, str | None]) -> None:
    """The three legacy stores are the company's or the embedded demo's, never a mix of the two:
    a plan over a configured cf_prod and the demo's billing_prod would 'correct' real accounts."""
    unset = [DSN_VARIABLES[store] for store in STORES if dsns[store] is None]
    if 0 < len(unset) < len(STORES):
        set_ = [DSN_VARIABLES[store] for store in STORES if dsns[store] is not None]
        raise SettingsError(unset[0], f"not set while {' and '.join(set_)} {'is' if len(set_) == 1 else 'are'}: "
                            f"set all three legacy stores' DSNs ({', '.join(unset)} missing) or none "
                            "(the embedded default)")


def _check_data_dir(data_dir: Path) -> None:
    """Where the embedded default keeps its PostgreSQL: a directory, or a path one can be made at."""
    for path in (data_dir, *data_dir.parents):
        if path.exists():
            if not path.is_dir():
                where = "it" if path == data_dir else f"{path}"
                raise SettingsError("RECOMPUTE_DATA_DIR", f"{data_dir} is not a directory ({where} is a file)")
            return


def _check_conninfo(variable: str, value: str) -> None:
    try:
        parse_dsn(value)
    except ProgrammingError as error:
        raise SettingsError(variable, f"not a libpq connection string: {' '.join(str(error).split())}") from None
