"""`recompute plan` (shared/spec/cli.md)."""

from __future__ import annotations

import os
import sys
import tempfile
from collections import Counter
from datetime import datetime
from pathlib import Path

import click
import orjson

from domain.drift import open_drift
from domain.legacy_tables import STORES
from domain.saved_plan import saved_document
from eventlog.stores import Error
from eventlog.tail import log_exists, log_head
from projections.plan import PlanResult
from projections.plan import plan as plan_corrections
from recompute.bootstrap import default_workers, running
from recompute.cli.common import (
    Instant,
    RunFailed,
    _refuse_rules_known_otherwise,
    active_rules_or_exit,
    app_or_exit,
    echo_json,
    exit_no_events,
    owners_or_exit,
    rules_line,
    rules_or_exit,
    utc_now,
    warn_if_never_ingested,
)
from recompute.cli.group import main
from recompute.progress import progress
from recompute.settings import SettingsError

FIRST = 5  # corrections shown after the summary; `--json` lists them all


def _by_column(result: PlanResult) -> list[tuple[str, str, str | None, int, int]]:
    """(table, op, column, corrections, accounts) per drifting column, in table order."""
    by_column = Counter((c.table, c.op, c.column) for c in result.corrections)
    accounts: dict[tuple[str, str, str | None], set[str]] = {}
    for c in result.corrections:
        accounts.setdefault((c.table, c.op, c.column), set()).add(c.account_id)
    return [(table, op, column, count, len(accounts[(table, op, column)]))
            for (table, op, column), count in sorted(by_column.items(), key=lambda kv: (kv[0][0], kv[0][1],
                                                                                        kv[0][2] or ""))]


def _headline(result: PlanResult) -> str:
    return (f"as of {result.as_of.isoformat()}, {rules_line(result.rules_version, result.rules_digest)}: "
            f"{result.accounts_checked} accounts checked, {result.accounts_disagreeing} disagreeing, "
            f"{len(result.corrections)} corrections")


def _first(result: PlanResult) -> list[tuple[str, str, str, str]]:
    return [(c.account_id, c.table + (f".{c.column}" if c.column else f" ({c.op})"), repr(c.from_), repr(c.to))
            for c in result.corrections[:FIRST]]


def _drift_lines(result: PlanResult) -> list[str]:
    """Where the drift comes from: corrections by owner and cause (explain ACCOUNT says each one)."""
    return [f"  {owner:<20} " + ", ".join(f"{n} {cause}" for cause, n in causes.items())
            for owner, causes in open_drift(result.corrections).items()]


def _summary(result: PlanResult) -> str:
    """Plain text (not a terminal): one line per drifting column, then the first corrections; stable."""
    lines = [_headline(result)]
    for table, op, column, count, accounts in _by_column(result):
        what = f"{table}.{column}" if column else f"{table} ({op})"
        lines.append(f"  {what:<48} {count:>6} {op:<6} in {accounts} accounts")
    if drift := _drift_lines(result):
        lines += ["where the drift comes from (corrections by owner and cause):", *drift]
    if result.corrections:
        lines.append(f"first corrections ({min(FIRST, len(result.corrections))} of {len(result.corrections)}; "
                     "--json lists them all):")
        lines += [f"  {account}  {where}  {before} -> {after}" for account, where, before, after in _first(result)]
    return "\n".join(lines + result.held_lines())


def save_plan(path: Path, document: dict) -> None:
    """Whole or not at all: written beside `path`, then renamed over it."""
    try:
        with tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
            tmp.write(orjson.dumps(document, option=orjson.OPT_INDENT_2))
        os.replace(tmp.name, path)
    except OSError as error:
        raise RunFailed(f"plan --out {path}: {error.strerror or error}") from None
    click.echo(f"recompute: plan saved to {path} (plan_digest {document['plan_digest']}); "
               f"`recompute apply --plan {path}` writes exactly its corrections", err=True)


def _print_table(result: PlanResult) -> None:
    """On a terminal: the same, as tables (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(_headline(result), highlight=False)
    if result.corrections:
        table = Table(title="drift by column", title_justify="left")
        for name, justify in (("table", "left"), ("column", "left"), ("op", "left"), ("corrections", "right"),
                              ("accounts", "right")):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for store_table, op, column, count, accounts in _by_column(result):
            table.add_row(store_table, column or "", op, f"{count:,}", f"{accounts:,}")
        console.print(table)
        if drift := _drift_lines(result):
            console.print("\n".join(["where the drift comes from (corrections by owner and cause):", *drift]),
                          highlight=False)
        first = Table(title=f"first corrections ({min(FIRST, len(result.corrections))} of "
                            f"{len(result.corrections)}; --json lists them all)", title_justify="left")
        for name in ("account", "where", "from", "to"):
            first.add_column(name, overflow="fold")
        for row in _first(result):
            first.add_row(*row)
        console.print(first)
    for line in result.held_lines():
        console.print(line, highlight=False)


@main.command()
@click.option("--as-of", "as_of", type=Instant(), default=None, help="The instant T (default: now).")
@click.option("--rules", "rules_path", type=click.Path(dir_okay=False), default=None)
@click.option("--account", default=None, help="Only this account.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Worker processes (default: the CPUs).")
@click.option("--out", "out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Save the plan for review; `apply --plan FILE` writes exactly its corrections.")
def plan(as_of: datetime | None, rules_path: str | None, account: str | None, as_json: bool,
         workers: int | None, out: str | None) -> None:
    """The corrections that would make the legacy stores agree with the true state; writes nothing."""
    rules = rules_or_exit(rules_path)
    owners = owners_or_exit()
    app = app_or_exit(reads_legacy=STORES, writes=False)
    at = as_of or utc_now()
    _refuse_rules_known_otherwise(app, rules, rules_path)
    rules = active_rules_or_exit(app, rules, rules_path, writes=False)
    workers = workers or default_workers()
    position = log_head(app.stores)  # before planning: the plan reflects at least this much (> 0: a log exists)
    try:
        with running(app.executor(workers, inline=account is not None)) as executor, \
                progress("plan", unit="ranges") as step:
            result = plan_corrections(app.stores, rules, at, account=account, workers=workers, executor=executor,
                                      on_progress=step, owners=owners, legacy_problems=app.legacy_problems) \
                if position or log_exists(app.stores) else PlanResult(as_of=at, rules_version=rules.version,
                                                                         rules_digest=rules.digest)
    except SettingsError as error:  # RECOMPUTE_DASK_SCHEDULER unreachable
        click.echo(f"recompute: {error}", err=True)
        sys.exit(2)
    except Error as error:
        raise RunFailed(f"plan failed: {error}") from error
    if account and result.accounts_read == 0:
        exit_no_events(account)
    if out:
        save_plan(Path(out), saved_document(result.as_json(), utc_now(), position, account))
    if as_json:
        echo_json(result.as_json())
    elif sys.stdout.isatty():
        _print_table(result)
    else:
        click.echo(_summary(result))
    if account and result.accounts_checked == 0:
        click.echo(f"recompute: account {account!r} is not in cf_prod.accounts as of {at.isoformat()}: "
                   "there is nothing to correct", err=True)
    elif not account:
        warn_if_never_ingested(result.accounts_checked)
