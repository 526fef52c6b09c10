"""`recompute apply` and `recompute relay` (cli.md; the protocol is in projections/applier.py)."""

from __future__ import annotations

import sys
from collections import Counter
from datetime import datetime

import click
import psycopg
from kombu import Connection

from domain.rules import RULES_V1
from domain.rules_identity import RulesConflict
from projections.applier import ApplyBusy, ApplyOptions, ApplyRefused, ApplyResult, apply as apply_corrections
from projections.legacy_writer import WriteRefused
from projections.relay import BrokerRefused, RelayReport, check_broker, relay as relay_events, waiting_events
from projections.store_writes import EarlierRunStillWriting
from recompute.cli import Instant, RunFailed, _json_out, _now, _refused_rules, _rules, _wiring, main, rules_line, \
    warn_if_never_ingested
from recompute.settings import LEGACY_STORES, read_settings


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
@click.option("--workers", type=click.IntRange(1, 16), default=2, show_default=True)
def apply(as_of: datetime | None, rules_path: str | None, account: str | None, as_json: bool, force: bool,
          max_accounts: int | None, max_share: float, workers: int) -> None:
    """Compute the corrections of `plan` and write them, with an audit record and domain events."""
    rules = _rules(rules_path)  # settings first: a bad one writes nothing
    _check_broker_url(read_settings().broker_url)
    wiring = _wiring(reads_legacy=LEGACY_STORES)
    options = ApplyOptions(account=account, force=force, max_accounts=max_accounts, max_share=max_share,
                           workers=workers)
    try:
        result = apply_corrections(wiring.dsns, rules, as_of or _now(), options)
    except RulesConflict as conflict:  # checked under the apply lock, before anything is written
        _refused_rules(conflict, rules_path)
    except (ApplyRefused, ApplyBusy, EarlierRunStillWriting) as error:
        raise RunFailed(str(error))
    except WriteRefused as error:  # a bug: the plan proposed a write rules-v1 §3 forbids
        raise RunFailed(f"apply refused a write: {error}; nothing of that store's batch was written")
    except psycopg.Error as error:
        raise RunFailed(f"apply failed: {' '.join(str(error).split())}; what was written is recorded, "
                        "rerun to continue")
    report = _relay(wiring.dsns["eventstore"], wiring.settings.broker_url)
    _json_out(_as_json(result, report)) if as_json else click.echo(_summary(result, report))
    warn_if_never_ingested(result.accounts_checked)


@main.command()
def relay() -> None:
    """Publish the outbox's waiting domain events to RECOMPUTE_BROKER_URL."""
    broker_url = read_settings().broker_url
    if not broker_url:
        click.echo("recompute: RECOMPUTE_BROKER_URL: not set, so events cannot be published", err=True)
        sys.exit(2)
    unreachable = _check_broker_url(broker_url)
    wiring = _wiring()
    if unreachable:  # even with nothing waiting: the operator asked whether events can flow
        raise RunFailed(f"the broker is unreachable ({unreachable}); "
                        f"{waiting_events(wiring.dsns['eventstore'])} events wait in the outbox")
    report = _relay(wiring.dsns["eventstore"], broker_url)
    click.echo(_relay_line(report))
    if report.error:
        raise RunFailed(f"the broker is unreachable ({report.error}); {report.waiting} events wait in the outbox")


def _check_broker_url(url: str | None) -> str | None:
    """An unusable URL, or a broker that refuses its credentials or vhost, is a configuration error,
    reported before anything is written (cli.md); a broker that cannot be reached is not (events
    wait in the outbox): its reason is returned."""
    if not url:
        return None
    try:
        Connection(url).transport  # noqa: B018 - resolves the transport named by the URL's scheme
        return check_broker(url)
    except (KeyError, ImportError, ValueError) as error:
        problem = f"unusable: {error}"
    except BrokerRefused as error:
        problem = str(error)
    click.echo(f"recompute: RECOMPUTE_BROKER_URL: {problem}", err=True)
    sys.exit(2)


def _relay(eventstore_dsn: str, broker_url: str | None) -> RelayReport | None:
    if not broker_url:
        return None
    try:
        return relay_events(eventstore_dsn, broker_url)
    except psycopg.Error as error:
        raise RunFailed(f"relay failed: {' '.join(str(error).split())}; the events wait in the outbox")


def _relay_line(report: RelayReport | None) -> str:
    if report is None:
        return "events: RECOMPUTE_BROKER_URL is not set; they wait in the outbox"
    line = f"events: published {report.published}, {report.waiting} waiting in the outbox"
    return line + (f" (broker unreachable: {report.error}; `recompute relay` publishes them)" if report.error else "")


def _summary(result: ApplyResult, report: RelayReport | None) -> str:
    lines = [f"as of {result.as_of.isoformat()}, {rules_line(result.rules_version, result.rules_digest)}: "
             f"{result.accounts_checked} accounts "
             f"checked, {result.accounts_disagreeing} disagreeing, {result.accounts_chosen} taken in this run"
             + (f" in run {result.run_id}" if result.accounts_chosen else "")]
    if result.recovered:
        lines.append("  recovered an interrupted run: " + ", ".join(f"{n} {s}" for s, n in sorted(result.recovered.items())))
    lines.append(f"  {result.count('applied')} corrections applied, {result.count('stale')} stale "
                 "(changed underneath: left alone, the next run picks them up)")
    by_column = Counter((c.table, c.op, c.column, status) for c, status in result.done)
    for (table, op, column, status), n in sorted(by_column.items(), key=lambda kv: tuple(map(str, kv[0]))):
        what = f"{table}.{column}" if column else f"{table} ({op})"
        lines.append(f"    {what:<48} {n:>6} {status}")
    lines.append(f"  domain events: {result.events['ready']} to publish, {result.events['void']} void")
    lines.append("  " + _relay_line(report))
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
    }


def demo_apply_step(wiring, at: datetime, say) -> None:
    """Step 4 of `recompute demo` (recompute/demo.py): apply on the demo's own, freshly made databases."""
    import time

    started = time.perf_counter()
    result = apply_corrections(wiring.dsns, RULES_V1, at, ApplyOptions(force=True))
    report = _relay(wiring.dsns["eventstore"], wiring.settings.broker_url)
    say(f"4. apply ({time.perf_counter() - started:.1f}s): {result.count('applied')} corrections applied, "
        f"{result.count('stale')} stale, in {result.accounts_chosen} accounts; {result.events['ready']} domain "
        f"events; {_relay_line(report)}")
