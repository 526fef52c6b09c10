"""The `recompute` command (shared/spec/cli.md). Exit codes: 0 done, 1 the run failed, 2 bad usage or configuration."""

from __future__ import annotations

import sys
import time
from collections import Counter
from datetime import UTC, datetime

import click
import orjson
import psycopg
import stripe

from domain.rules import RULES_V1, Rules, RulesError, load_rules
from ingestion.jobs import run_ingest
from projections.planner import PlanResult
from projections.planner import plan as plan_corrections
from recompute.bootstrap import SOURCES, Wiring, wire
from recompute.embedded import EmbeddedPostgresError, stop_embedded
from recompute.settings import SettingsError, read_settings


class RunFailed(click.ClickException):
    exit_code = 1


class Instant(click.ParamType):
    """An ISO 8601 instant with offset, e.g. 2026-03-01T00:00:00Z."""

    name = "instant"

    def convert(self, value, param, ctx) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 instant (e.g. 2026-03-01T00:00:00Z)", param, ctx)
        if parsed.tzinfo is None:
            self.fail(f"{value!r} has no offset; write e.g. {value}Z or {value}+00:00", param, ctx)
        return parsed.astimezone(UTC)


def _rules(path: str | None) -> Rules:
    """--rules FILE, else RECOMPUTE_RULES, else rules v1. Read before anything is wired, so a bad
    file writes nothing; its error says what and where (and which variable named it)."""
    try:
        settings = read_settings()
    except SettingsError as error:
        click.echo(f"recompute: {error}", err=True)
        sys.exit(2)
    chosen = path or settings.rules_path
    if chosen is None:
        return RULES_V1
    try:
        return load_rules(chosen)
    except RulesError as error:
        named_by = "" if path else "RECOMPUTE_RULES: "
        click.echo(f"recompute: {named_by}{error}", err=True)
        sys.exit(2)


def _now() -> datetime:
    return datetime.now(UTC)


def _wiring(*, uses_stripe: bool = False) -> Wiring:
    try:
        return wire(read_settings(), uses_stripe=uses_stripe)
    except (SettingsError, EmbeddedPostgresError) as error:
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
@click.option("--workers", type=click.IntRange(1, 16), default=3, show_default=True,
              help="Processes: each legacy table and the Stripe catch-up is a unit of work.")
def ingest(source: str, follow: bool, interval: float, batch_size: int, workers: int) -> None:
    """Append every change since the last checkpoint to the account event log."""
    wiring = _wiring(uses_stripe=source in ("stripe", "all"))
    try:
        jobs = wiring.ingest_jobs(source, batch_size=batch_size)
    except SettingsError as error:
        click.echo(f"recompute: {error}", err=True)
        sys.exit(2)
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


def _json_out(document: dict) -> None:
    click.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())


def _summary(result: PlanResult) -> str:
    lines = [f"as of {result.as_of.isoformat()}, rules {result.rules_version}: "
             f"{result.accounts_checked} accounts checked, {result.accounts_disagreeing} disagreeing, "
             f"{len(result.corrections)} corrections"]
    by_column = Counter((c.table, c.op, c.column) for c in result.corrections)
    accounts = {key: len({c.account_id for c in result.corrections if (c.table, c.op, c.column) == key})
                for key in by_column}
    for (table, op, column), count in sorted(by_column.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "")):
        what = f"{table}.{column}" if column else f"{table} ({op})"
        lines.append(f"  {what:<48} {count:>6} {op:<6} in {accounts[(table, op, column)]} accounts")
    return "\n".join(lines)


@main.command()
@click.option("--as-of", "as_of", type=Instant(), default=None, help="The instant T (default: now).")
@click.option("--rules", "rules_path", type=click.Path(dir_okay=False), default=None)
@click.option("--account", default=None, help="Only this account.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--workers", type=click.IntRange(1, 16), default=2, show_default=True)
def plan(as_of: datetime | None, rules_path: str | None, account: str | None, as_json: bool, workers: int) -> None:
    """The corrections that would make the legacy stores agree with the true state; writes nothing."""
    rules = _rules(rules_path)
    wiring = _wiring()
    try:
        result = plan_corrections(wiring.dsns, rules, as_of or _now(), account=account, workers=workers)
    except psycopg.Error as error:
        raise RunFailed(f"plan failed: {error}")
    _json_out(result.as_json()) if as_json else click.echo(_summary(result))
    warn_if_never_ingested(result.accounts_checked)


def warn_if_never_ingested(accounts_checked: int) -> None:
    """plan and apply read the account event log: before any `ingest` it holds nothing to check."""
    if accounts_checked == 0:
        click.echo("recompute: the event log holds no accounts; run `recompute ingest` first", err=True)


@main.command()
@click.argument("account_id")
@click.option("--as-of", "as_of", type=Instant(), default=None, help="The instant T (default: now).")
@click.option("--rules", "rules_path", type=click.Path(dir_okay=False), default=None)
@click.option("--json", "as_json", is_flag=True)
def explain(account_id: str, as_of: datetime | None, rules_path: str | None, as_json: bool) -> None:
    """Replay one account: its timeline, true state, why each value is what it is, and its drift."""
    from projections.explainer import explain as explain_account, render_text

    rules = _rules(rules_path)
    wiring = _wiring()
    try:
        explanation = explain_account(wiring.dsns, account_id, rules, as_of or _now())
    except psycopg.Error as error:
        raise RunFailed(f"explain failed: {error}")
    if not explanation.timeline and not explanation.later_events:
        click.echo(f"recompute: no events for account {account_id!r} in the log (has it been ingested?)", err=True)
        sys.exit(1)
    _json_out(explanation.as_json()) if as_json else click.echo(render_text(explanation))


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
    app = WebhookApp(ingester=wiring.stripe_job().stripe_ingester(), eventstore_dsn=wiring.dsns["eventstore"],
                     secret=wiring.settings.stripe_webhook_secret)
    server = make_server(app, host, port)
    click.echo(f"serving on http://{host}:{server.server_address[1]}"
               + ("" if wiring.settings.stripe_webhook_secret else " (webhooks refused: STRIPE_WEBHOOK_SECRET unset)"))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


def _register_more_commands() -> None:
    """Commands that live in modules of their own attach themselves to `main` here."""
    import importlib

    for module in ("recompute.cli_apply", "recompute.cli_demo"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise


_register_more_commands()
