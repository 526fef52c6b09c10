"""`recompute ingest` (shared/spec/cli.md)."""

from __future__ import annotations

import sys
import time

import click
import psycopg
import stripe

from domain.legacy_tables import STORES
from ingestion.jobs import run_ingest
from recompute.bootstrap import SOURCES
from recompute.cli.common import RunFailed, wiring_or_exit
from recompute.cli.group import main
from recompute.settings import SettingsError


@main.command()
@click.option("--source", type=click.Choice([*SOURCES, "all"]), default="all", show_default=True)
@click.option("--follow", is_flag=True, help="Keep ingesting, every --interval seconds.")
@click.option("--interval", type=float, default=5.0, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=20_000, show_default=True,
              help="Events committed per transaction, with their checkpoint.")
@click.option("--workers", type=click.IntRange(1, 16), default=3, show_default=True,
              help="Processes: each legacy table and the Stripe catch-up is a unit of work.")
def ingest(source: str, follow: bool, interval: float, batch_size: int, workers: int) -> None:
    """Append every change since the last checkpoint to the account event log."""
    wiring = wiring_or_exit(uses_stripe=source in ("stripe", "all"),
                     reads_legacy=STORES if source == "all" else tuple({source} & set(STORES)))
    try:
        jobs = wiring.ingest_jobs(source, batch_size=batch_size)
    except SettingsError as error:
        click.echo(f"recompute: {error}", err=True)
        sys.exit(2)
    if source == "all" and not wiring.settings.stripe_api_key:
        click.echo("stripe: skipped: STRIPE_API_KEY is not set, so Stripe is not polled")
    while True:
        started = time.perf_counter()
        try:
            for report in run_ingest(jobs, workers=workers):
                waiting = f", waiting {report.waiting}" if report.source == "stripe" else ""
                click.echo(f"{report.source}: read {report.rows_read}, appended {report.appended}, "
                           f"parked {report.parked}{waiting}")
        except (psycopg.Error, stripe.StripeError, OSError) as error:
            raise RunFailed(f"ingest failed: {error}; what was committed stands, rerun to continue")
        click.echo(f"ingested in {time.perf_counter() - started:.1f}s")
        if not follow:
            return
        time.sleep(interval)
