"""`recompute check` (cli.md "Least privilege"): every setting, server and privilege the commands need.

    settings_listing(settings) -> [(variable, shown)]   each setting, its secret parts masked
    masked(variable, value) -> str                       a value as it may be shown anywhere
    check(settings) -> [Finding]                         the full check: servers, the event store, privileges
    privilege_errors(stores) -> [str]                    the short form `apply` and `project` run first:
                                                         one query per legacy store, errors only

A finding is one line; errors are what a command would fail on (exit 2), warnings what a role may do
beyond what recompute needs (domain/privileges.py).
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit, urlunsplit

from domain.legacy_tables import STORES
from domain.privileges import Finding, findings
from domain.rules import RulesError, load_rules
from eventlog.stores import Connection, Error, ProgrammingError, Stores, connect_to, make_dsn, parse_dsn
from ingestion.legacy.privileges import observe
from recompute.bootstrap import check_stripe
from recompute.settings import DSN_VARIABLES, SETTING_NAMES, Settings, SettingsError

MASK = "****"
SECRET_PARAMETERS = ("password", "sslpassword")


def settings_listing(settings: Settings) -> list[tuple[str, str]]:
    """(variable, value as shown and where it came from) for every setting; unset ones say what happens instead."""
    unset = {"RECOMPUTE_RULES": "built-in rules v1", "STRIPE_API_KEY": "Stripe is not polled",
             "RECOMPUTE_STRIPE_API_BASE": "Stripe's own", "STRIPE_WEBHOOK_SECRET": "serve refuses webhooks",
             "RECOMPUTE_DASK_SCHEDULER": "a local cluster", "RECOMPUTE_BROKER_URL": "events wait in the outbox",
             "RECOMPUTE_LOG_FORMAT": "text", "RECOMPUTE_DATA_DIR": str(settings.data_dir)}
    listing = []
    for name in SETTING_NAMES:
        value = settings.configured.get(name)
        shown = f"{masked(name, value)} ({settings.origins.get(name, 'environment')})" if value else \
            f"(unset: {unset.get(name, 'the embedded default')})"
        listing.append((name, shown))
    return listing


def masked(variable: str, value: str) -> str:
    if variable.endswith("_DSN"):
        return masked_dsn(value)
    if variable == "RECOMPUTE_BROKER_URL":
        return masked_url(value)
    if variable in ("STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET"):
        return value.split("_", 2)[0] + "_" + MASK if "_" in value else MASK
    return value


def masked_dsn(dsn: str) -> str:
    """A libpq string (key=value or URI) with its password replaced."""
    try:
        params = parse_dsn(dsn)
    except ProgrammingError:
        return MASK
    return make_dsn(**{k: MASK if k in SECRET_PARAMETERS else v for k, v in params.items()})


def masked_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:{MASK}@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def check(settings: Settings) -> list[Finding]:
    found: list[Finding] = []
    if settings.rules_path is not None:
        try:
            load_rules(settings.rules_path)
        except RulesError as error:
            found.append(Finding("error", f"RECOMPUTE_RULES: {error}"))
    for name, dsn in settings.dsns.items():
        variable = DSN_VARIABLES[name]
        if dsn is None:
            continue  # the embedded default: recompute's own server, nothing to grant
        try:
            with connect_to(dsn, purpose="check") as conn:
                found += [Finding(f.level, f"{variable}: {f.text}") for f in
                          (_eventstore(conn) if name == "eventstore" else _store(conn, name))]
        except Error as error:
            found.append(Finding("error", f"{variable}: cannot connect: {' '.join(str(error).split())}"))
    if settings.broker_url:
        from projections.apply.relay import BrokerRefused, check_broker

        try:
            if reason := check_broker(settings.broker_url):
                found.append(Finding("warning", f"RECOMPUTE_BROKER_URL: unreachable ({reason}): events wait in "
                                                "the outbox"))
        except BrokerRefused as error:
            found.append(Finding("error", f"RECOMPUTE_BROKER_URL: {error}"))
    try:
        check_stripe(settings)
    except SettingsError as error:  # names STRIPE_API_KEY or RECOMPUTE_STRIPE_API_BASE
        found.append(Finding("error", str(error)))
    if settings.dask_scheduler and (problem := _unreachable(settings.dask_scheduler)):
        found.append(Finding("error", f"RECOMPUTE_DASK_SCHEDULER: {problem}"))
    return found


def privilege_errors(stores: Stores) -> list[str]:
    """The short form: one query per legacy store; what its role lacks, one line each."""
    lines = []
    for store in STORES:
        with stores.connect(store, purpose="check") as conn:
            lines += [f"{DSN_VARIABLES[store]}: {f.text}" for f in _store(conn, store) if f.level == "error"]
    return lines


def _store(conn: Connection, store: str) -> list[Finding]:
    observed, streams = observe(conn, store)
    return findings(store, observed, streams=streams)


def _eventstore(conn: Connection) -> list[Finding]:
    """recompute makes and writes its own tables there: it needs CREATE on the schema (owning the database does it)."""
    role, schema, superuser, create = conn.execute(
        "SELECT current_user, current_schema(), rolsuper, has_schema_privilege(current_schema(), 'CREATE') "
        "FROM pg_roles WHERE rolname = current_user").fetchone()  # type: ignore[misc]
    if superuser:
        return [Finding("warning", f"role {role} is a superuser; the event store needs only a database it owns")]
    if not create:
        return [Finding("error", f"role {role} may not create recompute's tables in schema {schema}: "
                                 "make it the owner of the event store's database")]
    return []


def _unreachable(address: str) -> str | None:
    parts = urlsplit(address)
    try:
        socket.create_connection((parts.hostname or "", parts.port or 8786), timeout=5).close()
    except OSError as error:
        return f"cannot reach {parts.hostname}:{parts.port or 8786}: {error.strerror or error}"
    return None
