"""`recompute report` (shared/spec/cli.md): the fleet's drift as one self-contained HTML page."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import click

from domain.legacy_tables import STORES
from domain.owners import NO_OVERRIDES, Owners
from domain.rules import Rules
from eventlog.stores import Error, Stores
from eventlog.tail import log_exists
from recompute.cli.common import (
    Instant,
    RunFailed,
    _refuse_rules_known_otherwise,
    active_rules_or_exit,
    app_or_exit,
    owners_or_exit,
    rules_or_exit,
    utc_now,
)
from recompute.cli.group import main


def write_report(stores: Stores, rules: Rules, as_of: datetime, path: Path, *, workers: int = 2,
                 owners: Owners = NO_OVERRIDES) -> tuple[int, float, float]:
    """Gathers, renders and saves the page; returns (bytes, seconds gathering, seconds rendering)."""
    from projections.report.data import gather
    from projections.report.render import render_html, save

    started = time.perf_counter()
    data = gather(stores, rules, as_of, workers=workers, owners=owners)
    gathered = time.perf_counter()
    html = render_html(data, generated_at=utc_now())
    rendered = time.perf_counter()
    return save(path, html), gathered - started, rendered - gathered


@main.command()
@click.option("--html", "html_path", type=click.Path(path_type=Path), required=True, help="Where to write the page.")
@click.option("--as-of", "as_of", type=Instant(), default=None, help="The instant T (default: now).")
@click.option("--workers", type=click.IntRange(1, 16), default=2, show_default=True)
def report(html_path: Path, as_of: datetime | None, workers: int) -> None:
    """A self-contained HTML page of the fleet's drift, with charts; opens in a browser with no network."""
    from projections.report.render import BadReportPath, check_path

    try:
        check_path(html_path)
    except BadReportPath as error:
        raise click.UsageError(str(error)) from None
    rules = rules_or_exit(None)
    owners = owners_or_exit()
    app = app_or_exit(reads_legacy=STORES, writes=False)
    _refuse_rules_known_otherwise(app, rules, None)
    rules = active_rules_or_exit(app, rules, None, writes=False)  # the active generation's, as plan's
    if not log_exists(app.stores):
        raise RunFailed("report: nothing ingested yet (run `recompute ingest` first)")
    try:
        size, gathering, rendering = write_report(app.stores, rules, as_of or utc_now(), html_path, workers=workers,
                                                   owners=owners)
    except BadReportPath as error:
        raise click.UsageError(str(error)) from None
    except Error as error:
        raise RunFailed(f"report failed: {error}") from error
    click.echo(f"wrote {html_path} ({size / 1024:,.0f} KiB; gathered in {gathering:.1f}s, rendered in {rendering:.2f}s)")
