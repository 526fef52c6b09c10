"""`recompute status` (shared/spec/cli.md)."""

from __future__ import annotations

import click

from eventlog.stores import Error
from recompute.cli.common import RunFailed, app_or_exit, echo_json, rules_or_exit, utc_now
from recompute.cli.group import main
from recompute.settings import read_settings


@main.command()
@click.option("--json", "as_json", is_flag=True)
def status(as_json: bool) -> None:
    """The projector's state: the active projection and rules, the log, each source's checkpoint and age,
    parked records, accounts disagreeing, the outbox."""
    from projections.read_model.generations import ActiveRulesUnreadable
    from projections.status import read_status, render_status

    default_rules = rules_or_exit(None)
    app = app_or_exit(writes=False)
    source = "RECOMPUTE_RULES" if read_settings().rules_path else "built in"
    try:
        found = read_status(app.stores, now=utc_now(), default_rules=default_rules,
                            default_source=source)
    except ActiveRulesUnreadable as error:
        raise RunFailed(f"status failed: {error}") from None
    except Error as error:
        raise RunFailed(f"status failed: {' '.join(str(error).split())}") from error
    echo_json(found.as_json()) if as_json else click.echo(render_status(found))
