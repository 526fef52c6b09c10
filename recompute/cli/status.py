"""`recompute status` (shared/spec/cli.md)."""

from __future__ import annotations

import click
import psycopg

from recompute.cli.common import RunFailed, echo_json, utc_now, wiring_or_exit
from recompute.cli.group import main


@main.command()
@click.option("--json", "as_json", is_flag=True)
def status(as_json: bool) -> None:
    """The projector's state: the log, each source's checkpoint and age, parked records, the outbox."""
    from projections.status import read_status, render_status

    wiring = wiring_or_exit(writes=False)
    try:
        found = read_status(wiring.dsns["eventstore"], now=utc_now())
    except psycopg.Error as error:
        raise RunFailed(f"status failed: {' '.join(str(error).split())}")
    echo_json(found.as_json()) if as_json else click.echo(render_status(found))
