"""`recompute project [--follow]` (shared/spec/cli.md "Continuous projection").

One pass: ingest everything new from every source, then the follower (projections/follow/) steps
until it has caught up with the log (changed accounts, timers come due), applies, relays, exits.
`--follow`: the same without end: the ingest loop in a forked child (recompute/cli/project_ingest.py:
each legacy store's change stream where `cdc setup` made one, read continuously, the rest by
snapshot; Stripe's Events API every --stripe-interval s when STRIPE_API_KEY is set), and in this
process the webhook receiver with --port, the relay, and the follower in the main thread. SIGTERM or SIGINT finishes
the batch in hand, releases the leases and exits 0.

`--resume` closes the circuit breaker after an operator has looked at why it opened.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

import click

from domain.legacy_tables import STORES
from domain.rules_identity import RulesConflict
from eventlog.processes import die_with_parent
from eventlog.stores import OperationalError
from projections.follow.breaker import resume as resume_breaker
from projections.follow.follower import Follower, StepReport
from projections.follow.health import Health
from projections.follow.loop import Wake, catch_up, follow
from projections.follow.tracking import ensure_tracking
from projections.read_model.generations import RulesDiffer
from recompute.bootstrap import App
from recompute.cli.common import (
    RunFailed,
    _refuse_rules_known_otherwise,
    active_rules_or_exit,
    app_or_exit,
    check_broker_url,
    owners_or_exit,
    privileges_or_exit,
    relay_line,
    rules_line,
    rules_or_exit,
)
from recompute.cli.group import main
from recompute.cli.project_ingest import FAILURES, Sources
from recompute.collector import collect_rarely, settle_step
from recompute.settings import read_settings

log = logging.getLogger("recompute.project")


@main.command()
@click.option("--follow", "keep_going", is_flag=True, help="Keep projecting until SIGTERM or SIGINT.")
@click.option("--rules", "rules_path", type=click.Path(dir_okay=False), default=None,
              help="Must be the active rules (change them with `backfill`).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="With --follow: also receive Stripe webhooks (and serve /metrics) on this port.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--stripe-interval", type=click.FloatRange(0.1), default=30.0, show_default=True,
              help="Seconds between polls of Stripe's Events API (when STRIPE_API_KEY is set).")
@click.option("--legacy-interval", type=click.FloatRange(0.0), default=0.2, show_default=True,
              help="Seconds between snapshot reads of a legacy store without a change stream "
                   "(beside streams, of their unpublished tables: at least 5).")
@click.option("--max-share", type=click.FloatRange(0, 1), default=0.10, show_default=True,
              help="The circuit breaker: at most this share of the accounts corrected per hour.")
@click.option("--lease", "lease_s", type=click.FloatRange(0.5), default=10.0, show_default=True,
              help="Seconds a partition lease lasts; a dead follower's partitions are taken over after it.")
@click.option("--resume", is_flag=True, help="Close the circuit breaker, so the followers write again; then exit.")
@click.option("--step-timings", type=click.Path(dir_okay=False), default=None, hidden=True,
              help="Append each step's timings to this file, a JSON line a step (scripts/load_follow.py).")
def project(keep_going: bool, rules_path: str | None, port: int | None, host: str, stripe_interval: float,
            legacy_interval: float, max_share: float, lease_s: float, resume: bool, step_timings: str | None) -> None:
    """Continuous projection: ingest, re-evaluate changed and due accounts, apply (one pass; --follow keeps going)."""
    if resume:
        _resume()
        return
    if port is not None and not keep_going:
        click.echo("recompute: --port receives webhooks while projecting: it needs --follow "
                   "(see `recompute project --help`)", err=True)
        sys.exit(2)
    rules = rules_or_exit(rules_path)
    check_broker_url(read_settings().broker_url)
    sock = None
    if port is not None:
        from recompute.server import ServeError, bind
        try:
            sock = bind(host, port)
        except ServeError as error:
            click.echo(f"recompute: {error}", err=True)
            sys.exit(2)
    owners = owners_or_exit()
    app = app_or_exit(uses_stripe=True, reads_legacy=STORES)
    privileges_or_exit(app)
    _refuse_rules_known_otherwise(app, rules, rules_path)
    rules = active_rules_or_exit(app, rules, rules_path, writes=True)  # only the active rules (exit 2)
    metrics = None
    try:
        follower = Follower(app.stores, rules, lease_s=lease_s, max_share=max_share,
                            broker_url=app.settings.broker_url, owners=owners)
    except RulesDiffer as differ:
        click.echo(f"recompute: project: {differ}", err=True)
        sys.exit(2)
    except RulesConflict as conflict:
        click.echo(f"recompute: {conflict}", err=True)
        sys.exit(2)
    generation = follower.generation
    made = " (made now: the first pass evaluates every account)" if follower.created_generation else ""
    click.echo(f"projection: generation {generation.id}, {rules_line(rules.version, rules.digest)}{made}; "
               f"follower {follower.owner}")
    try:
        if not keep_going:
            _one_pass(app, follower)
            return
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        threads, server = [], None
        if sock is not None:
            from recompute.server import build
            secret = app.settings.stripe_webhook_secret
            ready = f"serving on http://{host}:{sock.getsockname()[1]}" + (
                "" if secret else " (webhooks refused: STRIPE_WEBHOOK_SECRET unset)")
            server, metrics = build(stores=app.stores,
                                    make_ingester=app.stripe_job().stripe_ingester, secret=secret,
                                    on_ready=lambda: click.echo(ready))
            metrics.watch_followers(app.stores)
            follower.on_lag = metrics.correction_lag.observe
            threads.append(threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="serve",
                                            daemon=True))
        if app.settings.broker_url:
            kick = threading.Event()
            follower.after_commit = lambda report: kick.set() if report.applied else None
            threads.append(threading.Thread(target=_relay_loop, args=(app, stop, kick), name="relay", daemon=True))
        ingesting = _ingest_process(app, legacy_interval, stripe_interval, lease_s)
        for thread in threads:
            thread.start()
        wake = Wake(app.stores)
        collect_rarely()
        try:
            say = _say if step_timings is None else _timed(_say, step_timings)

            def on_report(report: StepReport) -> None:
                say(report)
                settle_step()
            follow(follower, stop, wake, on_report=on_report)
        finally:
            stop.set()
            if server is not None:
                server.should_exit = True
            ingesting.stop.set()
            ingesting.process.join(timeout=60)
            for thread in threads:
                thread.join(timeout=30)
            wake.close()
        click.echo("stopped: the batch in hand was finished; leases released")
    except FAILURES as error:
        raise RunFailed(f"project failed: {' '.join(str(error).split())}; what was committed stands, "
                        "rerun to continue") from error
    finally:
        follower.close()


def _one_pass(app: App, follower: Follower) -> None:
    sources = Sources.open(app)
    try:
        click.echo(sources.describe())
        ingested, streamed = sources.once()
    finally:
        sources.close()
    for report in ingested:
        waiting = f", waiting {report.waiting}" if report.source == "stripe" else ""
        click.echo(f"ingest {report.source}: read {report.rows_read}, appended {report.appended}, "
                   f"parked {report.parked}{waiting}")
    for store, appended in streamed.items():
        click.echo(f"ingest {store}: stream appended {appended}")
    reports = catch_up(follower)
    total = StepReport()
    for r in reports:
        total.events += r.events
        total.accounts += r.accounts
        total.due += r.due
        total.applied += r.applied
        total.stale += r.stale
        total.withheld += r.withheld
        total.tripped = total.tripped or r.tripped
        total.partitions = max(total.partitions, r.partitions)
        total.relay = r.relay or total.relay
    _say(total, always=True)
    if app.settings.broker_url is None or total.relay is None:
        from recompute.cli.common import relay_outbox
        total.relay = relay_outbox(app)
    click.echo(relay_line(total.relay))


def _say(report: StepReport, *, always: bool = False) -> None:
    if report.switched:
        click.echo(f"the active projection is now {report.switched} (backfill --apply): following it")
    if not always and not (report.accounts or report.applied or report.tripped or report.withheld):
        return
    line = (f"{report.partitions} partitions: {report.events} new events, {report.accounts} accounts evaluated "
            f"({report.due} timers due), {report.applied} corrections applied, {report.stale} stale")
    if report.recovered:
        line += ", recovered " + ", ".join(f"{n} {s}" for s, n in sorted(report.recovered.items()))
    if report.withheld:
        line += f", {report.withheld} accounts withheld (circuit breaker open: `recompute project --resume`)"
    click.echo(line)  # the breaker opening is logged by the follower (recompute.follow)


def _timed(say: Callable[[StepReport], None], path: str) -> Callable[[StepReport], None]:
    """`say`, and each step's marks (seconds from its start to each label) with its sizes, appended to `path`."""
    import json
    import time

    out = open(path, "a", buffering=1)

    def on_report(report: StepReport) -> None:
        say(report)
        out.write(json.dumps({"at": time.time(), "accounts": report.accounts, "events": report.events,
                              "applied": report.applied, "marks": report.marks}) + "\n")
    return on_report


@dataclass
class _Ingesting:
    process: BaseProcess
    stop: Any  # a multiprocessing Event


def _ingest_process(app: App, legacy_interval: float, stripe_interval: float, lease_s: float) -> _Ingesting:
    """The ingest loop in a process of its own (forked before any thread starts, dying with this
    one), so reading the stores and projecting use both cores; SIGTERM/SIGINT are the parent's to
    handle: it sets `stop`, and the child finishes the pass in hand."""
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    process = context.Process(target=_ingest_child, args=(app, stop, legacy_interval, stripe_interval, lease_s, os.getpid()),
                              name="recompute project ingest", daemon=True)
    process.start()
    return _Ingesting(process, stop)


def _ingest_child(app: App, stop: Any, legacy_interval: float, stripe_interval: float, lease_s: float,
                  parent: int) -> None:
    die_with_parent(parent)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    _ingest_loop(app, stop, legacy_interval, stripe_interval, lease_s)


def _ingest_loop(app: App, stop: Any, legacy_interval: float, stripe_interval: float, lease_s: float) -> None:
    """In the child: the streams polled continuously, the snapshots and Stripe at their intervals
    (recompute/cli/project_ingest.py); a failure is logged once and retried."""
    starting = Health(log, "ingest", source="ingest")
    while not stop.is_set():
        try:
            # a frozen follower's streams are ended by the server within its lease (not under 2 s: a busy reader answers late)
            sources = Sources.open(app, sender_timeout_s=max(lease_s, 2.0))
        except FAILURES as error:
            starting.down(error, gone="cannot start")
            stop.wait(1.0)
            continue
        starting.up("started")
        try:
            sources.run(stop, legacy_interval, stripe_interval)
        finally:
            sources.close()


def _relay_loop(app: App, stop: threading.Event, kick: threading.Event) -> None:
    """Publishes the outbox as soon as a step applied something (and every few seconds for what
    waited on a broker that was down), beside the follower, until stopped; then once more. The
    broker or the event store going away is a line when it goes and one when it is back."""
    from projections.apply.relay import relay
    broker = Health(log, "the broker", source="broker")
    eventstore = Health(log, "the event store (relay)", source="eventstore")

    def once() -> None:
        try:
            report = relay(stores=app.stores, broker_url=app.settings.broker_url or "")
        except OperationalError as error:
            eventstore.down(error)
            return
        eventstore.up()
        if report.error:
            broker.down(f"{report.error}; {report.waiting} events wait in the outbox")
        else:
            broker.up(f"{report.published} events published")

    while not stop.is_set():
        kick.wait(1.0 if broker.is_down or eventstore.is_down else 5.0)
        kick.clear()
        once()
    once()


def _resume() -> None:
    app = app_or_exit()
    with app.stores.connect(purpose="project", autocommit=True) as conn:
        ensure_tracking(conn)
        if resume_breaker(conn):
            click.echo("circuit breaker closed: the followers write again (withheld accounts are re-evaluated)")
        else:
            click.echo("circuit breaker was not open: nothing to resume")
