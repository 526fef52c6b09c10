"""`recompute ingest` (shared/spec/cli.md).

A legacy store with a change stream (`recompute cdc setup`) is read from its stream: one pass reads
up to the server's flush LSN at the start, `--follow` keeps reading; its tables that are not
published (no replica identity) are still read by snapshot. `--resync` reads every table of every
store by snapshot, compares each row with the log and appends only real differences, holding each
stream's lock so the two never interleave.
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack

import click
import stripe

from domain.legacy_tables import STORES
from eventlog.stores import Error, Stores
from ingestion.jobs import IngestJob
from ingestion.legacy.cdc.keeper import tables_not_streamed
from ingestion.legacy.cdc.pgoutput import lsn_text
from ingestion.legacy.cdc.replication import ReplicationError
from ingestion.legacy.cdc.setup import has_stream, resync_lock
from ingestion.legacy.cdc.stream import LegacyChangeStream, NotSetUp
from ingestion.streamed_jobs import snapshot_jobs, snapshots_while_streaming
from recompute.bootstrap import SOURCES
from recompute.cli.common import RunFailed, app_or_exit
from recompute.cli.group import main
from recompute.settings import SettingsError

_FAILURES = (Error, stripe.StripeError, OSError, ReplicationError, NotSetUp)


@main.command()
@click.option("--source", type=click.Choice([*SOURCES, "all"]), default="all", show_default=True)
@click.option("--follow", is_flag=True, help="Keep ingesting: streams continuously, the rest every --interval seconds.")
@click.option("--interval", type=float, default=5.0, show_default=True)
@click.option("--resync", is_flag=True, help="Compare every legacy row with the log by snapshot, also where a "
                                             "change stream exists, and append only real differences.")
@click.option("--batch-size", type=click.IntRange(1), default=20_000, show_default=True,
              help="Events committed per transaction, with their checkpoint.")
@click.option("--workers", type=click.IntRange(1, 16), default=3, show_default=True,
              help="Processes: each legacy table and the Stripe catch-up is a unit of work.")
def ingest(source: str, follow: bool, interval: float, resync: bool, batch_size: int, workers: int) -> None:
    """Append every change since the last checkpoint to the account event log."""
    app = app_or_exit(uses_stripe=source in ("stripe", "all"),
                            reads_legacy=STORES if source == "all" else tuple({source} & set(STORES)))
    try:
        jobs = app.ingest_jobs(source, batch_size=batch_size)
    except SettingsError as error:
        click.echo(f"recompute: {error}", err=True)
        sys.exit(2)
    if source == "all" and not app.settings.stripe_api_key:
        click.echo("stripe: skipped: STRIPE_API_KEY is not set, so Stripe is not polled")
    stores = app.stores
    with ExitStack() as held:
        try:
            streamed = [job.source for job in jobs if job.source in STORES
                        and has_stream(job.source, stores)]
            streams: list[LegacyChangeStream] = []
            if not resync:
                jobs = snapshot_jobs(jobs, {store: tables_not_streamed(store, stores) for store in streamed})
                streams = [held.enter_context(LegacyChangeStream(store=store, stores=stores))
                           for store in streamed]
        except _FAILURES as error:
            raise RunFailed(f"ingest failed: {' '.join(str(error).split())}") from error
        _passes(jobs, streams, follow=follow, interval=interval, workers=workers,
                held_streams=[(stores, store) for store in streamed] if resync else [])


def _passes(jobs: list[IngestJob], streams: list[LegacyChangeStream], *, follow: bool, interval: float,
            workers: int, held_streams: list[tuple[Stores, str]]) -> None:
    first = True
    while True:
        started = time.perf_counter()
        counts = [(stream.appended, stream.parked) for stream in streams]
        try:
            with ExitStack() as held:  # resync: each pass holds the streams' stores, taken before its snapshots
                for stores, store in held_streams:
                    held.enter_context(resync_lock(stores, store))
                reports = snapshots_while_streaming(jobs, (lambda: [s.poll(0.1) for s in streams]) if streams else None,
                                                    workers=workers)
            for report in reports:
                waiting = f", waiting {report.waiting}" if report.source == "stripe" else ""
                click.echo(f"{report.source}: read {report.rows_read}, appended {report.appended}, "
                           f"parked {report.parked}{waiting}")
                for table, why in sorted(report.blocked.items()):
                    click.echo(f"{report.source}.{table} blocked: {why} (not read; nothing of it is corrected "
                               "until its schema matches again)")
            if first:
                for stream in streams:
                    stream.catch_up()
            elif streams:  # streams are read continuously between the snapshot passes
                deadline = time.monotonic() + interval
                while time.monotonic() < deadline:
                    for stream in streams:
                        stream.poll(0.1)
            for stream, (appended, parked) in zip(streams, counts, strict=True):
                click.echo(f"{stream.store}: stream appended {stream.appended - appended}, parked "
                           f"{stream.parked - parked}, recorded up to {lsn_text(stream.position)}")
                for table, why in sorted(stream.blocked.items()):
                    click.echo(f"{table} blocked: {why} (its changes are not recorded)")
        except _FAILURES as error:
            raise RunFailed(f"ingest failed: {' '.join(str(error).split())}; what was committed stands, "
                            "rerun to continue") from error
        click.echo(f"ingested in {time.perf_counter() - started:.1f}s")
        if not follow:
            return
        if not streams:
            time.sleep(interval)
        first = False
