"""The `recompute` command (shared/spec/cli.md). Exit codes: 0 done, 1 the run failed, 2 bad usage or configuration."""

from __future__ import annotations

import sys
import time

import click
import psycopg
import stripe

from recompute.bootstrap import SOURCES, Wiring, wire
from recompute.embedded import EmbeddedPostgresError, stop_embedded
from recompute.settings import SettingsError, read_settings


class RunFailed(click.ClickException):
    exit_code = 1


def _wiring(*, uses_stripe: bool = False) -> Wiring:
    try:
        return wire(read_settings(), uses_stripe=uses_stripe)
    except SettingsError as error:
        click.echo(f"recompute: {error}", err=True)
        sys.exit(2)
    except EmbeddedPostgresError as error:
        click.echo(f"recompute: {error}", err=True)
        sys.exit(2)


@click.group()
def main() -> None:
    """Event-sourced projector of billing and dunning state."""


@main.command()
@click.option("--source", type=click.Choice([*SOURCES, "all"]), default="all", show_default=True)
@click.option("--follow", is_flag=True, help="Keep ingesting, every --interval seconds.")
@click.option("--interval", type=float, default=5.0, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=20_000, show_default=True,
              help="Events committed per transaction, with their checkpoint.")
def ingest(source: str, follow: bool, interval: float, batch_size: int) -> None:
    """Append every change since the last checkpoint to the account event log."""
    wiring = _wiring(uses_stripe=source in ("stripe", "all"))
    try:
        ingesters = wiring.ingesters(source, batch_size=batch_size)
    except SettingsError as error:
        click.echo(f"recompute: {error}", err=True)
        sys.exit(2)
    while True:
        for ingester in ingesters:
            started = time.perf_counter()
            try:
                report = ingester.run()
            except (psycopg.Error, stripe.StripeError, OSError) as error:
                raise RunFailed(f"ingest {ingester.source} failed: {error}; what was committed stands, rerun to continue")
            click.echo(
                f"{report.source}: read {report.rows_read}, appended {report.appended}, "
                f"parked {report.parked} ({time.perf_counter() - started:.1f}s)"
            )
        if not follow:
            return
        time.sleep(interval)


@main.group()
def embedded() -> None:
    """The embedded PostgreSQL used when no DSN is set."""


@embedded.command("stop")
def embedded_stop() -> None:
    settings = read_settings()
    try:
        stopped = stop_embedded(settings.data_dir)
    except EmbeddedPostgresError as error:
        raise RunFailed(str(error))
    click.echo("stopped" if stopped else "not running")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
def serve(host: str, port: int) -> None:
    """HTTP: POST /webhooks/stripe, GET /healthz, GET /metrics."""
    from ingestion.webhook_server import WebhookApp, make_server

    wiring = _wiring()
    app = WebhookApp(ingester=wiring.stripe_ingester(), eventstore_dsn=wiring.dsns["eventstore"],
                     secret=wiring.settings.stripe_webhook_secret)
    server = make_server(app, host, port)
    click.echo(f"serving on http://{host}:{server.server_address[1]}"
               + ("" if wiring.settings.stripe_webhook_secret else " (webhooks refused: STRIPE_WEBHOOK_SECRET unset)"))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
