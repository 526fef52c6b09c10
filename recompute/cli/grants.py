"""`recompute grants` and `recompute check` (cli.md "Least privilege")."""

from __future__ import annotations

import sys

import click

from domain.legacy_tables import STORES
from domain.privileges import grants_sql, quote_ident
from eventlog.stores import parse_dsn
from recompute.check import check as check_all
from recompute.check import settings_listing
from recompute.cli.common import echo_json
from recompute.cli.group import main
from recompute.settings import SettingsError, read_settings


@main.command()
@click.option("--role", default="recompute", show_default=True, help="The role the legacy DSNs will name.")
@click.option("--source", type=click.Choice([*STORES, "all"]), default="all", show_default=True)
def grants(role: str, source: str) -> None:
    """Prints the SQL that gives ROLE exactly the privileges recompute needs on each legacy store, and no more."""
    databases = _databases()
    stores = STORES if source == "all" else (source,)
    click.echo("\n\n".join(grants_sql(role, store, databases.get(store)) for store in stores))
    if source == "all":
        eventstore = databases.get("eventstore", "<event store database>")
        click.echo(f"\n-- eventstore: recompute makes and writes its own tables there; run by a superuser:\n"
                   f"-- ALTER DATABASE {eventstore} OWNER TO {quote_ident(role)};  "
                   "(or CREATE DATABASE ... OWNER ... for a new one)")


def _databases() -> dict[str, str]:
    """The database each configured DSN names (for the comments); none when unset or unreadable."""
    try:
        dsns = read_settings().dsns
    except SettingsError:
        return {}
    return {store: parse_dsn(dsn).get("dbname") or store
            for store, dsn in dsns.items() if dsn}


@main.command()
@click.option("--json", "as_json", is_flag=True)
def check(as_json: bool) -> None:
    """Checks every setting, server and privilege the commands need; exit 2 when one is missing."""
    try:
        settings = read_settings()
    except SettingsError as error:
        click.echo(f"recompute: {error}", err=True)
        sys.exit(2)
    listing = settings_listing(settings)
    found = check_all(settings)
    errors = sum(f.level == "error" for f in found)
    if as_json:
        echo_json({"settings": [{"name": name, "value": value} for name, value in listing],
                   "findings": [{"level": f.level, "text": f.text} for f in found], "ok": not errors})
    else:
        for name, value in listing:
            click.echo(f"{name} = {value}")
        for f in found:
            click.echo(f.line())
        warnings = len(found) - errors
        click.echo(f"check: {errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}")
    if errors:
        sys.exit(2)
