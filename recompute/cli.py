"""The `recompute` command (shared/spec/cli.md). Exit codes: 0 done, 1 the run failed, 2 bad usage or configuration."""

from __future__ import annotations

import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import NoReturn

import click
import orjson
import psycopg
import stripe

from domain.rules import RULES_V1, Rules, RulesError, load_rules
from domain.rules_identity import RulesConflict
from ingestion.jobs import run_ingest
from projections.planner import PlanResult
from projections.planner import plan as plan_corrections
from recompute.bootstrap import SOURCES, Wiring, wire
from recompute.embedded import EmbeddedPostgresError, stop_embedded
from recompute.eventlog import log_exists
from recompute.ownschema import check_known_rules
from recompute.settings import LEGACY_STORES, SettingsError, read_settings


class RunFailed(click.ClickException):
    exit_code = 1


class Instant(click.ParamType):
    """An ISO 8601 instant with offset, e.g. 2026-03-01T00:00:00Z, within EARLIEST..LATEST: the rules add
    and subtract day thresholds to it, and Python's datetime ends at year 9999."""

    name = "instant"
    EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
    LATEST = datetime(9000, 1, 1, tzinfo=UTC)

    def convert(self, value, param, ctx) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 instant (e.g. 2026-03-01T00:00:00Z)", param, ctx)
        if parsed.tzinfo is None:
            self.fail(f"{value!r} has no offset; write e.g. {value}Z or {value}+00:00", param, ctx)
        try:
            instant = parsed.astimezone(UTC)
        except OverflowError:
            instant = None
        if instant is None or not self.EARLIEST <= instant < self.LATEST:
            self.fail(f"{value!r} is outside the instants recompute computes with "
                      f"({self.EARLIEST:%Y-%m-%d} to {self.LATEST:%Y-%m-%d})", param, ctx)
        return instant


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


def _refuse_rules_known_otherwise(wiring: Wiring, rules: Rules, path: str | None) -> None:
    """Rules whose version is built in, or was used by an earlier `apply`, with another digest are
    refused (exit 2) with both digests. Reads only (`apply` checks again under its lock)."""
    try:
        with psycopg.connect(wiring.dsns["eventstore"],
                             options="-c TimeZone=UTC -c default_transaction_read_only=on") as conn:
            check_known_rules(conn, rules)
    except RulesConflict as conflict:
        _refused_rules(conflict, path)
    except psycopg.Error as error:
        raise RunFailed(f"reading the known rules versions failed: {' '.join(str(error).split())}")


def _refused_rules(conflict: RulesConflict, path: str | None) -> NoReturn:
    """One line naming where the rules came from (--rules, RECOMPUTE_RULES or built in) and both digests."""
    chosen = path or read_settings().rules_path
    if chosen is None:
        where, these = f"the built-in rules {conflict.rules.version}", "these rules"
    else:
        where, these = f"{'' if path else 'RECOMPUTE_RULES: '}rules file {chosen}", "this file's rules"
    click.echo(f"recompute: {where}: {conflict.said_of(these)}", err=True)
    sys.exit(2)


def rules_line(version: str, digest: str) -> str:
    return f"rules {version} (digest {digest})"


def _now() -> datetime:
    return datetime.now(UTC)


def _wiring(*, uses_stripe: bool = False, reads_legacy: tuple[str, ...] = (), writes: bool = True) -> Wiring:
    try:
        return wire(read_settings(), uses_stripe=uses_stripe, reads_legacy=reads_legacy, writes=writes)
    except (SettingsError, EmbeddedPostgresError) as error:
        click.echo(f"recompute: {error}", err=True)
        sys.exit(2)


class _Recompute(click.Group):
    """Usage errors are one line, naming the option or argument (cli.md: exit 2); the rest is click's."""

    def main(self, *args, **kwargs):
        kwargs.pop("standalone_mode", None)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as error:
            error.show()
            sys.exit(2)
        except click.UsageError as error:
            where = f" (see `{error.ctx.command_path} --help`)" if error.ctx else ""
            click.echo(f"recompute: {' '.join(error.format_message().split())}{where}", err=True)
            sys.exit(2)
        except click.ClickException as error:
            error.show()
            sys.exit(error.exit_code)
        except click.Abort:
            click.echo("recompute: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_Recompute)
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
    wiring = _wiring(uses_stripe=source in ("stripe", "all"),
                     reads_legacy=LEGACY_STORES if source == "all" else tuple({source} & set(LEGACY_STORES)))
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
    lines = [f"as of {result.as_of.isoformat()}, {rules_line(result.rules_version, result.rules_digest)}: "
             f"{result.accounts_checked} accounts checked, {result.accounts_disagreeing} disagreeing, "
             f"{len(result.corrections)} corrections"]
    by_column = Counter((c.table, c.op, c.column) for c in result.corrections)
    accounts = {key: len({c.account_id for c in result.corrections if (c.table, c.op, c.column) == key})
                for key in by_column}
    for (table, op, column), count in sorted(by_column.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "")):
        what = f"{table}.{column}" if column else f"{table} ({op})"
        lines.append(f"  {what:<48} {count:>6} {op:<6} in {accounts[(table, op, column)]} accounts")
    return "\n".join(lines + result.held_lines())


@main.command()
@click.option("--as-of", "as_of", type=Instant(), default=None, help="The instant T (default: now).")
@click.option("--rules", "rules_path", type=click.Path(dir_okay=False), default=None)
@click.option("--account", default=None, help="Only this account.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--workers", type=click.IntRange(1, 16), default=2, show_default=True)
def plan(as_of: datetime | None, rules_path: str | None, account: str | None, as_json: bool, workers: int) -> None:
    """The corrections that would make the legacy stores agree with the true state; writes nothing."""
    rules = _rules(rules_path)
    wiring = _wiring(reads_legacy=LEGACY_STORES, writes=False)
    at = as_of or _now()
    _refuse_rules_known_otherwise(wiring, rules, rules_path)
    try:
        result = plan_corrections(wiring.dsns, rules, at, account=account, workers=workers) \
            if log_exists(wiring.dsns["eventstore"]) else PlanResult(as_of=at, rules_version=rules.version,
                                                                     rules_digest=rules.digest)
    except psycopg.Error as error:
        raise RunFailed(f"plan failed: {error}")
    if account and result.events_folded == 0:
        _say_no_events(account)
    _json_out(result.as_json()) if as_json else click.echo(_summary(result))
    if account and result.accounts_checked == 0:
        click.echo(f"recompute: account {account!r} is not in cf_prod.accounts as of {at.isoformat()}: "
                   "there is nothing to correct", err=True)
    elif not account:
        warn_if_never_ingested(result.accounts_checked)


def _say_no_events(account_id: str) -> None:
    click.echo(f"recompute: no events for account {account_id!r} in the log (has it been ingested?)", err=True)
    sys.exit(1)


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
    wiring = _wiring(writes=False)
    if not log_exists(wiring.dsns["eventstore"]):
        _say_no_events(account_id)
    _refuse_rules_known_otherwise(wiring, rules, rules_path)
    try:
        explanation = explain_account(wiring.dsns, account_id, rules, as_of or _now())
    except psycopg.Error as error:
        raise RunFailed(f"explain failed: {error}")
    if not explanation.timeline and not explanation.later_events:
        _say_no_events(account_id)
    _json_out(explanation.as_json()) if as_json else click.echo(render_text(explanation))


@main.command()
@click.option("--json", "as_json", is_flag=True)
def status(as_json: bool) -> None:
    """The projector's state: the log, each source's checkpoint and age, parked records, the outbox."""
    from projections.status import read_status, render_status

    wiring = _wiring(writes=False)
    try:
        found = read_status(wiring.dsns["eventstore"], now=_now())
    except psycopg.Error as error:
        raise RunFailed(f"status failed: {' '.join(str(error).split())}")
    _json_out(found.as_json()) if as_json else click.echo(render_status(found))


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
    wiring = _wiring()
    secret = wiring.settings.stripe_webhook_secret
    serving = f"serving on http://{host}:{sock.getsockname()[1]}" + (
        "" if secret else " (webhooks refused: STRIPE_WEBHOOK_SECRET unset)")
    run(sock, eventstore_dsn=wiring.dsns["eventstore"], make_ingester=wiring.stripe_job().stripe_ingester,
        secret=secret, on_ready=lambda: click.echo(serving), http=parser, recording=recording)


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
