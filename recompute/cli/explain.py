"""`recompute explain` (shared/spec/cli.md)."""

from __future__ import annotations

from datetime import datetime

import click

from eventlog.stores import Error
from eventlog.tail import log_exists
from recompute.cli.common import (
    Instant,
    RunFailed,
    _refuse_rules_known_otherwise,
    active_rules_or_exit,
    app_or_exit,
    echo_json,
    exit_no_events,
    owners_or_exit,
    rules_or_exit,
    utc_now,
)
from recompute.cli.group import main


@main.command()
@click.argument("account_id")
@click.option("--as-of", "as_of", type=Instant(), default=None, help="The instant T (default: now).")
@click.option("--rules", "rules_path", type=click.Path(dir_okay=False), default=None)
@click.option("--json", "as_json", is_flag=True)
def explain(account_id: str, as_of: datetime | None, rules_path: str | None, as_json: bool) -> None:
    """Replay one account: its timeline, true state, why each value is what it is, and its drift."""
    from projections.explain import explain as explain_account
    from projections.explain import render_text

    rules = rules_or_exit(rules_path)
    owners = owners_or_exit()
    app = app_or_exit(writes=False)
    if not log_exists(app.stores):
        exit_no_events(account_id)
    _refuse_rules_known_otherwise(app, rules, rules_path)
    rules = active_rules_or_exit(app, rules, rules_path, writes=False)
    try:
        with app.event_log() as log:
            explanation = explain_account(app.stores, account_id, rules, as_of or utc_now(), log=log, owners=owners)
    except Error as error:
        raise RunFailed(f"explain failed: {error}") from error
    if not explanation.timeline and not explanation.later_events:
        exit_no_events(account_id)
    echo_json(explanation.as_json()) if as_json else click.echo(render_text(explanation))
