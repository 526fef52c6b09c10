"""`recompute backfill` (shared/spec/cli.md "Rule changes: `backfill` and the active rules")."""

from __future__ import annotations

import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

import click

from domain.legacy_tables import STORES
from domain.rules import RULES_V1, Rules
from domain.rules_identity import RulesConflict
from eventlog.stores import Error
from eventlog.tail import log_exists
from projections.apply.cas_sql import WriteRefused
from projections.apply.protocol import ApplyBusy, ApplyOptions, ApplyRefused, ApplyResult
from projections.apply.writes import EarlierRunStillWriting
from projections.read_model.backfill import BackfillBusy, BackfillResult, activate
from projections.read_model.backfill import backfill as build
from projections.read_model.generations import ActiveRulesUnreadable
from recompute.bootstrap import App, default_workers, running
from recompute.cli.common import (
    Instant,
    RunFailed,
    _refuse_rules_known_otherwise,
    _refused_rules,
    app_or_exit,
    check_broker_url,
    echo_json,
    privileges_or_exit,
    relay_line,
    relay_outbox,
    rules_line,
    rules_or_exit,
    utc_now,
)
from recompute.cli.group import main
from recompute.progress import progress
from recompute.settings import SettingsError, read_settings


@main.command()
@click.option("--rules", "rules_path", type=click.Path(dir_okay=False), required=True,
              help="The rules to replay every account's history under.")
@click.option("--as-of", "as_of", type=Instant(), default=None,
              help="The instant T (default: a pending backfill of these rules resumes at its T; else now).")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Worker processes (default: the CPUs).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--apply", "apply_", is_flag=True, help="Switch to these rules and write the corrections.")
@click.option("--force", is_flag=True, help="With --apply: even past --max-share.")
@click.option("--max-share", type=click.FloatRange(0, 1), default=0.10, show_default=True,
              help="With --apply: refuse to change more than this share of the accounts checked.")
def backfill(rules_path: str, as_of: datetime | None, workers: int | None, as_json: bool, apply_: bool,
             force: bool, max_share: float) -> None:
    """Replay every account under FILE into a new projection beside the active one; --apply switches to it."""
    if force and not apply_:
        raise click.UsageError("--force goes with --apply")
    rules = rules_or_exit(rules_path)
    rules_text = Path(rules_path).read_text()
    if apply_:
        check_broker_url(read_settings().broker_url)
    app = app_or_exit(reads_legacy=STORES)
    if apply_:
        privileges_or_exit(app)
    _refuse_rules_known_otherwise(app, rules, rules_path)
    if not log_exists(app.stores):
        raise RunFailed("the event log holds no accounts; run `recompute ingest` first")
    active = active_rules(app)
    options = ApplyOptions(force=force, max_share=max_share)
    applied: ApplyResult | None = None
    try:
        workers = workers or default_workers()
        with running(app.executor(workers)) as executor, progress("backfill", unit="partitions") as step:
            result = build(app.stores, rules, rules_text, active, as_of, executor=executor, now=utc_now(),
                           reuse_active=apply_, tasks=workers, on_progress=step)
            if apply_:
                applied = activate(app.stores, result, rules, options, executor=executor)
    except SettingsError as error:  # RECOMPUTE_DASK_SCHEDULER unreachable
        click.echo(f"recompute: {error}", err=True)
        sys.exit(2)
    except RulesConflict as conflict:
        _refused_rules(conflict, rules_path)
    except (BackfillBusy, ApplyRefused, ApplyBusy, EarlierRunStillWriting) as error:
        raise RunFailed(str(error)) from None
    except WriteRefused as error:
        raise RunFailed(f"apply refused a write: {error}; nothing of that store's batch was written") from None
    except Error as error:
        raise RunFailed(f"backfill failed: {' '.join(str(error).split())}; what was committed is kept, "
                        "rerun to continue") from error
    report = relay_outbox(app) if applied else None
    if as_json:
        document = result.as_json(applied=applied is not None)
        if applied is not None:
            document["apply"] = {"run_id": applied.run_id if applied.accounts_chosen else None,
                                 "applied": applied.count("applied"), "stale": applied.count("stale"),
                                 "recovered": dict(applied.recovered)}
        echo_json(document)
    else:
        click.echo(_summary(result, active, applied) + (f"\n  {relay_line(report)}" if applied else ""))


def active_rules(app: App) -> Rules:
    """The active generation's rules; before any `backfill --apply`, RECOMPUTE_RULES or v1."""
    try:
        generation = app.rules.active()
    except ActiveRulesUnreadable as error:
        raise RunFailed(str(error)) from None
    if generation is None:
        return rules_or_exit(None) if app.settings.rules_path else RULES_V1
    return generation.rules


def _summary(result: BackfillResult, active: Rules, applied: ApplyResult | None) -> str:
    g = result.generation
    against = rules_line(active.version, active.digest) if active.version == result.active_rules_version \
        else f"rules {result.active_rules_version}"
    lines = [f"backfill as of {g.as_of.isoformat()}, {rules_line(g.rules_version, g.rules_digest)} against the "
             f"active {against}: {result.accounts_checked} accounts checked, {result.events_replayed} events replayed"]
    if result.already_active:
        lines.append(f"  generation {g.id} of these rules is already active at this T: finishing its writes "
                     "(what follows is what its build found)")
    elif result.resumed:
        lines.append(f"  resumed generation {g.id} at its T: {result.partitions_resumed} of {g.partitions} partitions "
                     "were already built")
    for dropped in result.dropped:
        lines.append(f"  dropped generation {dropped.id}, built by an earlier backfill and never made active "
                     f"({rules_line(dropped.rules_version, dropped.rules_digest)}, as of {dropped.as_of.isoformat()})")
    lines.append(f"  against the active rules: {result.accounts_changing} accounts changing")
    by_field = Counter(c["field"] for c in result.changes)
    lines += [f"    {name:<40} {n:>6} accounts" for name, n in sorted(by_field.items())]
    lines.append(f"  against the legacy stores: {result.accounts_disagreeing} accounts disagreeing, "
                 f"{len(result.corrections)} corrections")
    by_column = Counter(f"{c.table}.{c.column}" if c.column else f"{c.table} ({c.op})" for c in result.corrections)
    lines += [f"    {what:<48} {n:>6}" for what, n in sorted(by_column.items())]
    if applied is None:
        lines.append("  not applied: `backfill --apply` makes these rules active and writes the corrections")
    else:
        lines.append(f"  applied: generation {g.id} ({g.rules_version}) is active; {applied.count('applied')} "
                     f"corrections applied, {applied.count('stale')} stale"
                     + (f", recovered {dict(applied.recovered)}" if applied.recovered else ""))
    return "\n".join(lines)
