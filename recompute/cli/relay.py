"""`recompute relay` (shared/spec/cli.md)."""

from __future__ import annotations

import sys

import click

from projections.apply.relay import waiting_events
from recompute.cli.common import RunFailed, app_or_exit, check_broker_url, relay_line, relay_outbox
from recompute.cli.group import main
from recompute.settings import read_settings


@main.command()
def relay() -> None:
    """Publish the outbox's waiting domain events to RECOMPUTE_BROKER_URL."""
    broker_url = read_settings().broker_url
    if not broker_url:
        click.echo("recompute: RECOMPUTE_BROKER_URL: not set, so events cannot be published", err=True)
        sys.exit(2)
    unreachable = check_broker_url(broker_url)
    app = app_or_exit()
    if unreachable:  # even with nothing waiting: the operator asked whether events can flow
        raise RunFailed(f"the broker is unreachable ({unreachable}); "
                        f"{waiting_events(app.stores)} events wait in the outbox")
    report = relay_outbox(app)
    click.echo(relay_line(report))
    if report.error:
        raise RunFailed(f"the broker is unreachable ({report.error}); {report.waiting} events wait in the outbox")
