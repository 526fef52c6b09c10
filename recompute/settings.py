"""Configuration, read in one place from the environment (cli.md, "Configuration").

Nothing here opens a connection; `SettingsError` names the variable that is missing or unusable,
and the command line turns it into one line and exit code 2.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import psycopg.conninfo

from domain.legacy_tables import STORES

DSN_VARIABLES = {
    "cf_prod": "RECOMPUTE_CF_PROD_DSN",
    "billing_prod": "RECOMPUTE_BILLING_PROD_DSN",
    "subs": "RECOMPUTE_SUBS_DSN",
    "eventstore": "RECOMPUTE_EVENTSTORE_DSN",
}


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

    @property
    def needs_embedded(self) -> bool:
        return any(dsn is None for dsn in self.dsns.values())


def read_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    dsns: dict[str, str | None] = {}
    for store, variable in DSN_VARIABLES.items():
        value = env.get(variable) or None
        if value is not None:
            _check_conninfo(variable, value)
        dsns[store] = value
    _all_legacy_or_none(dsns)

    rules = env.get("RECOMPUTE_RULES") or None
    if rules is not None and not Path(rules).is_file():
        raise SettingsError("RECOMPUTE_RULES", f"no rules file at {rules!r}")

    api_base = env.get("RECOMPUTE_STRIPE_API_BASE") or None
    if api_base is not None and not api_base.startswith(("http://", "https://")):
        raise SettingsError("RECOMPUTE_STRIPE_API_BASE", f"not an http(s) address: {api_base!r}")

    secret = env.get("STRIPE_WEBHOOK_SECRET") or None
    if secret is not None and not secret.startswith("whsec_"):
        raise SettingsError("STRIPE_WEBHOOK_SECRET", "a signing secret starts with 'whsec_'")

    scheduler = env.get("RECOMPUTE_DASK_SCHEDULER") or None
    if scheduler is not None and "://" not in scheduler:
        raise SettingsError("RECOMPUTE_DASK_SCHEDULER", f"not a scheduler address like tcp://host:8786: {scheduler!r}")

    default_home = Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "recompute"
    data_dir = Path(env.get("RECOMPUTE_DATA_DIR") or default_home)
    if any(dsn is None for dsn in dsns.values()):
        _check_data_dir(data_dir)
    return Settings(
        dsns=dsns,
        rules_path=Path(rules) if rules else None,
        stripe_api_key=env.get("STRIPE_API_KEY") or None,
        stripe_api_base=api_base,
        stripe_webhook_secret=secret,
        broker_url=env.get("RECOMPUTE_BROKER_URL") or None,
        data_dir=data_dir,
        dask_scheduler=scheduler,
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
        psycopg.conninfo.conninfo_to_dict(value)
    except psycopg.ProgrammingError as error:
        raise SettingsError(variable, f"not a libpq connection string: {error}") from None
