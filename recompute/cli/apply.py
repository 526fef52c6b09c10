"""`recompute apply` (shared/spec/cli.md)."""

from __future__ import annotations

import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import NoReturn

import click
import orjson

from domain.legacy_tables import STORES
from domain.rules_identity import RulesConflict
from domain.saved_plan import SavedPlan, SavedPlanError, read_document
from eventlog.stores import Error
from projections.apply.cas_sql import WriteRefused
from projections.apply.protocol import ApplyBusy, ApplyOptions, ApplyRefused, ApplyResult
from projections.apply.protocol import apply as apply_corrections
from projections.apply.relay import RelayReport
from projections.apply.saved import PlanAlreadyApplied, apply_saved
from projections.apply.writes import EarlierRunStillWriting
from recompute.bootstrap import default_workers, running
from recompute.cli.common import (
    Instant,
    RunFailed,
    _refuse_rules_known_otherwise,
    _refused_rules,
    active_rules_or_exit,
    app_or_exit,
    check_broker_url,
    echo_json,
    owners_or_exit,
    privileges_or_exit,
    relay_line,
    relay_outbox,
    rules_line,
    rules_or_exit,
    utc_now,
    warn_if_never_ingested,
)
from recompute.cli.group import main
from recompute.settings import SettingsError, read_settings


@main.command()
@click.option("--as-of", "as_of", type=Instant(), default=None, help="The instant T (default: now).")
@click.option("--rules", "rules_path", type=click.Path(dir_okay=False), default=None)
@click.option("--account", default=None, help="Only this account.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--force", is_flag=True, help="Apply even past --max-share.")
@click.option("--max-accounts", type=click.IntRange(0), default=None,
              help="Change at most N accounts: the first N disagreeing ones by id.")
@click.option("--max-share", type=click.FloatRange(0, 1), default=0.10, show_default=True,
              help="Refuse to change more than this share of the accounts checked.")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Worker processes (default: the CPUs).")
@click.option("--plan", "plan_path", type=click.Path(dir_okay=False), default=None,
              help="Write exactly the corrections of a plan saved by `plan --out` (each by compare-and-set).")
def apply(as_of: datetime | None, rules_path: str | None, account: str | None, as_json: bool, force: bool,
          max_accounts: int | None, max_share: float, workers: int | None, plan_path: str | None) -> None:
    """Compute the corrections of `plan` and write them, with an audit record and domain events."""
    if plan_path is not None:
        given = [name for name, value in (("--as-of", as_of), ("--rules", rules_path), ("--account", account),
                                          ("--max-accounts", max_accounts)) if value is not None]
        if given:
            raise click.UsageError(f"--plan writes the saved plan as it is: {', '.join(given)} cannot change it")
        return apply_saved_plan(plan_path, as_json=as_json, force=force, max_share=max_share)
    rules = rules_or_exit(rules_path)  # settings first: a bad one writes nothing
    check_broker_url(read_settings().broker_url)
    owners = owners_or_exit()
    app = app_or_exit(reads_legacy=STORES)
    privileges_or_exit(app)
    _refuse_rules_known_otherwise(app, rules, rules_path)  # a file that lies about its version, first
    rules = active_rules_or_exit(app, rules, rules_path, writes=True)
    workers = workers or default_workers()
    options = ApplyOptions(account=account, force=force, max_accounts=max_accounts, max_share=max_share,
                           workers=workers, owners=owners)
    try:
        with running(app.executor(workers, inline=account is not None)) as executor:
            result = apply_corrections(app.stores, rules, as_of or utc_now(), options, executor=executor)
    except SettingsError as error:  # RECOMPUTE_DASK_SCHEDULER unreachable
        click.echo(f"recompute: {error}", err=True)
        sys.exit(2)
    except RulesConflict as conflict:  # checked under the apply lock, before anything is written
        _refused_rules(conflict, rules_path)
    except (ApplyRefused, ApplyBusy, EarlierRunStillWriting) as error:
        raise RunFailed(str(error)) from None
    except WriteRefused as error:  # a bug: the plan proposed a write rules-v1 §3 forbids
        raise RunFailed(f"apply refused a write: {error}; nothing of that store's batch was written") from None
    except Error as error:
        raise RunFailed(f"apply failed: {' '.join(str(error).split())}; what was written is recorded, "
                        "rerun to continue") from error
    report = relay_outbox(app)
    echo_json(_as_json(result, report)) if as_json else click.echo(_summary(result, report))
    warn_if_never_ingested(result.accounts_checked)

def apply_saved_plan(path: str, *, as_json: bool, force: bool, max_share: float) -> None:
    """`apply --plan FILE`: a file that is not the plan it says it is, was made under other rules than
    the active ones, or was applied already, is refused in one line, exit 2, nothing written."""
    saved = read_saved_plan_or_exit(path)
    rules = rules_or_exit(None)
    check_broker_url(read_settings().broker_url)
    app = app_or_exit(reads_legacy=STORES)
    privileges_or_exit(app)
    rules = active_rules_or_exit(app, rules, None, writes=True)
    if (saved.rules_version, saved.rules_digest) != (rules.version, rules.digest):
        refuse(f"{path}: made under {rules_line(saved.rules_version, saved.rules_digest)}, but the active rules are "
               f"{rules_line(rules.version, rules.digest)}; make a new plan with `recompute plan --out`")
    try:
        result = apply_saved(app.stores, rules, saved, ApplyOptions(force=force, max_share=max_share))
    except PlanAlreadyApplied as error:
        refuse(f"{path}: {error}")
    except RulesConflict as conflict:
        _refused_rules(conflict, None)
    except (ApplyRefused, ApplyBusy, EarlierRunStillWriting) as error:
        raise RunFailed(str(error)) from None
    except WriteRefused as error:  # checked for every correction of the file before anything is written
        refuse(f"{path}: {error}; nothing was written")
    except Error as error:
        raise RunFailed(f"apply failed: {' '.join(str(error).split())}; what was written is recorded, "
                        "rerun `apply --plan` to continue") from error
    report = relay_outbox(app)
    echo_json(_as_json(result, report)) if as_json else click.echo(_summary(result, report))


def read_saved_plan_or_exit(path: str) -> SavedPlan:
    try:
        document = orjson.loads(Path(path).read_bytes())
    except OSError as error:
        refuse(f"--plan {path}: {error.strerror or error}")
    except orjson.JSONDecodeError as error:
        refuse(f"--plan {path}: not JSON ({error})")
    try:
        return read_document(document, path)
    except SavedPlanError as error:
        refuse(str(error))


def refuse(line: str) -> NoReturn:
    click.echo(f"recompute: {line}", err=True)
    sys.exit(2)


def _summary(result: ApplyResult, report: RelayReport | None) -> str:
    lines = [f"as of {result.as_of.isoformat()}, {rules_line(result.rules_version, result.rules_digest)}: "
             f"{result.accounts_checked} accounts "
             f"checked, {result.accounts_disagreeing} disagreeing, {result.accounts_chosen} taken in this run"
             + (f" in run {result.run_id}" if result.accounts_chosen else "")]
    if result.recovered:
        lines.append("  recovered an interrupted run: " + ", ".join(f"{n} {s}" for s, n in sorted(result.recovered.items())))
    if result.plan_digest:
        lines.append(f"  saved plan {result.plan_digest}" + (
            ": an interrupted run of it had settled " + ", ".join(
                f"{n} {s}" for s, n in sorted(result.settled_before.items())) if result.settled_before else ""))
    lines.append(f"  {result.count('applied')} corrections applied, {result.count('stale')} stale "
                 + ("(the row no longer held `from`: not written; a new plan decides about it)" if result.plan_digest
                    else "(changed underneath: left alone, the next run picks them up)"))
    if result.plan_digest:
        lines += [f"    stale: {c.account_id} {c.table}{'.' + c.column if c.column else ' (' + c.op + ')'} "
                  f"{c.from_!r} -> {c.to!r}" for c, status in result.done if status == "stale"]
    by_column = Counter((c.table, c.op, c.column, status) for c, status in result.done)
    for (table, op, column, status), n in sorted(by_column.items(), key=lambda kv: tuple(map(str, kv[0]))):
        what = f"{table}.{column}" if column else f"{table} ({op})"
        lines.append(f"    {what:<48} {n:>6} {status}")
    lines.append(f"  domain events: {result.events['ready']} to publish, {result.events['void']} void")
    lines.append("  " + relay_line(report))
    return "\n".join(lines)

def _as_json(result: ApplyResult, report: RelayReport | None) -> dict:
    return {
        "as_of": result.as_of.isoformat(), "rules_version": result.rules_version, "rules_digest": result.rules_digest,
        "run_id": result.run_id if result.accounts_chosen else None,
        "accounts_checked": result.accounts_checked, "accounts_disagreeing": result.accounts_disagreeing,
        "accounts_changed": result.accounts_chosen, "applied": result.count("applied"), "stale": result.count("stale"),
        "recovered": dict(result.recovered),
        "events": {"ready": result.events["ready"], "void": result.events["void"],
                   "published": report.published if report else 0,
                   "waiting": report.waiting if report else None, "broker_error": report.error if report else None},
        "corrections": [{**c.as_json(), "status": status} for c, status in result.done],
        "stale_corrections": [c.as_json() for c, status in result.done if status == "stale"],
        "plan_digest": result.plan_digest,
    }
