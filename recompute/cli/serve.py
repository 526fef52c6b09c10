"""`recompute serve` (shared/spec/cli.md)."""

from __future__ import annotations

import sys

import click

from recompute.cli.common import app_or_exit
from recompute.cli.group import main


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--http", "parser", type=click.Choice(["httptools", "h11"]), default="httptools", hidden=True)
@click.option("--recording", type=click.Choice(["group", "group2", "thread"]), default="group",
              hidden=True)
def serve(host: str, port: int, parser: str, recording: str) -> None:
    """HTTP: POST /webhooks/stripe, GET /healthz, GET /metrics."""
    from recompute.server import ServeError, bind, run

    try:
        sock = bind(host, port)
    except ServeError as error:
        click.echo(f"recompute: {error}", err=True)
        sys.exit(2)
    app = app_or_exit()
    secret = app.settings.stripe_webhook_secret
    serving = f"serving on http://{host}:{sock.getsockname()[1]}" + (
        "" if secret else " (webhooks refused: STRIPE_WEBHOOK_SECRET unset)")
    run(sock, stores=app.stores, make_ingester=app.stripe_job().stripe_ingester,
        secret=secret, on_ready=lambda: click.echo(serving), http=parser, recording=recording,
        watch_followers=True)
