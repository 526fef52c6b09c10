"""`recompute status`: what the event store says about the projector, read in one snapshot.

    read_status(eventstore_dsn, now=) -> Status     one REPEATABLE READ transaction, writes nothing
    Status.as_json() / render_status(status)        what `status --json` and `status` print

The log (events, accounts), each source's checkpoint and its age, parked records by source and
table, Stripe records waiting for their customer's account, the outbox by status, and the last
`apply` run (what it found disagreeing). The kept projection and its active rules come with the
rule-change work (`backfill`); until then `projection` is null.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from eventlog.account_log import EVENTS_TABLE
from eventlog.own_tables import count_waiting
from eventlog.tables_present import has_tables
from projections.follow.status import follow_lines, follow_status


@dataclass(frozen=True)
class SourceCheckpoint:
    source: str  # "stripe", or "legacy:<store>.<table>"
    updated_at: datetime
    age_seconds: float


@dataclass(frozen=True)
class Status:
    now: datetime
    log_events: int = 0
    accounts: int = 0
    sources: list[SourceCheckpoint] = field(default_factory=list)
    parked: dict[str, int] = field(default_factory=dict)  # "source table" -> records not since recorded
    stripe_waiting: int = 0
    outbox: dict[str, int] = field(default_factory=dict)  # held | ready | sent | void -> events
    last_apply: dict[str, Any] | None = None
    follow: dict[str, Any] | None = None  # projections/follow/status.py (follow's section)

    @property
    def outbox_waiting(self) -> int:
        return self.outbox.get("ready", 0) + self.outbox.get("held", 0)

    def as_json(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "projection": None,
            "log": {"events": self.log_events, "accounts": self.accounts},
            "sources": [{"source": s.source, "checkpoint_at": s.updated_at.isoformat(),
                         "age_seconds": round(s.age_seconds, 3)} for s in self.sources],
            "parked_records": sum(self.parked.values()),
            "parked_by_table": self.parked,
            "stripe_waiting": self.stripe_waiting,
            "accounts_disagreeing": None if self.last_apply is None else self.last_apply.get("accounts_disagreeing"),
            "outbox": {"waiting": self.outbox_waiting, **self.outbox},
            "last_apply": self.last_apply,
            "follow": self.follow,
        }


def read_status(eventstore_dsn: str, *, now: datetime) -> Status:
    with psycopg.connect(eventstore_dsn) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cur = conn.cursor(row_factory=dict_row)
        if not has_tables(conn, EVENTS_TABLE):
            return Status(now=now)  # nothing ingested yet: not even our tables exist
        log = cur.execute(f"SELECT (SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}) AS events, "
                          "(SELECT count(*) FROM ingest_row_digest WHERE store = 'cf_prod' AND tbl = 'accounts' "
                          "AND stream IS NOT NULL) AS accounts").fetchone()
        sources = [SourceCheckpoint(r["source"], r["updated_at"], (now - r["updated_at"]).total_seconds())
                   for r in cur.execute("SELECT source, updated_at FROM ingest_checkpoint ORDER BY source")]
        parked = {f"{r['source']} {r['tbl']}": r["n"] for r in cur.execute(
            "SELECT source, tbl, count(*) AS n FROM parked_record WHERE resolved_at IS NULL "
            "GROUP BY source, tbl ORDER BY source, tbl")}
        waiting = count_waiting(conn)
        outbox = {r["status"]: r["n"] for r in cur.execute(
            "SELECT status, count(*) AS n FROM outbox_event GROUP BY status ORDER BY status")}
        follow = follow_status(conn)
        run = cur.execute("SELECT run_id, started_at, finished_at, as_of, rules_version, summary FROM apply_run "
                          "ORDER BY started_at DESC LIMIT 1").fetchone()
    last_apply = None if run is None else {
        "run_id": str(run["run_id"]), "started_at": run["started_at"].isoformat(),
        "finished_at": run["finished_at"] and run["finished_at"].isoformat(), "as_of": run["as_of"].isoformat(),
        "rules_version": run["rules_version"], **(run["summary"] or {})}
    return Status(now=now, log_events=log["events"], accounts=log["accounts"], sources=sources, parked=parked,
                  stripe_waiting=waiting, outbox=outbox, last_apply=last_apply, follow=follow)


def render_status(status: Status) -> str:
    lines = ["projection: none kept yet (every plan replays the log)",
             f"log: {status.log_events} events, {status.accounts} accounts (cf_prod.accounts rows recorded)"]
    lines.append("sources (last checkpoint, age):" if status.sources else "sources: nothing ingested yet")
    for s in status.sources:
        lines.append(f"  {s.source:<40} {s.updated_at.isoformat(timespec='seconds')}  {_age(s.age_seconds)}")
    lines.append(f"parked records: {sum(status.parked.values())}"
                 + "".join(f"\n  {where:<40} {n}" for where, n in status.parked.items()))
    lines.append(f"stripe records waiting for their customer's account: {status.stripe_waiting}")
    run = status.last_apply
    lines.append("last apply: none" if run is None else
                 f"last apply: {run['started_at']} as of {run['as_of']}, rules {run['rules_version']}: "
                 f"{run.get('accounts_disagreeing', '?')} accounts disagreeing, {run.get('applied', '?')} applied"
                 + ("" if run["finished_at"] else " (did not finish: the next apply settles it)"))
    lines += follow_lines(status.follow)
    lines.append(f"outbox: {status.outbox_waiting} waiting"
                 + "".join(f", {n} {state}" for state, n in status.outbox.items()))
    return "\n".join(lines)


def _age(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit} ago"
    return f"{seconds:.0f}s ago"
