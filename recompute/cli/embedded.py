"""`recompute embedded` (shared/spec/cli.md)."""

from __future__ import annotations

import click

from recompute.cli.common import RunFailed
from recompute.cli.group import main
from recompute.embedded import EmbeddedPostgresError, stop_embedded
from recompute.settings import read_settings


@main.group()
def embedded() -> None:
    """The embedded PostgreSQL used when no DSN is set."""

@embedded.command("stop")
def embedded_stop() -> None:
    settings = read_settings()
    try:
        stopped = stop_embedded(settings.data_dir)
    except EmbeddedPostgresError as error:
        raise RunFailed(str(error)) from None
    click.echo("stopped" if stopped else "not running")
