"""`recompute status`: what the event store says about the projector, read in one snapshot.

    read_status(stores, now=, default_rules=, default_source=) -> Status     one REPEATABLE READ
                                                    transaction, writes nothing
    Status.as_json() / render_status(status)        what `status --json` and `status` print

The log (events, accounts), each source's checkpoint and its age, parked records by source and
table, Stripe records waiting for their customer's account, the outbox by status, and the last
`apply` run (what it found disagreeing); each change stream as its reader last found it
(`streams`: broken and why, the tables read by snapshot meanwhile); the active projection (`projection`: the active
generation, its rules, T, accounts, when it was built and activated, the highest log position its
partitions reflect; null before any `backfill --apply`), the rules active now (`active_rules`: the
generation's, else the default ones the command line names), and the kept facts (`kept_facts`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from domain.fold import FOLD_VERSION
from domain.rules import Rules
from eventlog.one_row import one_row
from eventlog.own_tables import count_waiting, recorded_blocks
from eventlog.stores import Stores
from eventlog.tables_present import has_tables
from eventlog.tail import has_log, head
from ingestion.legacy.schema import describe
from projections.follow.status import follow_lines, follow_status
from projections.read_model import generations
from projections.read_model.generations import Generation


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
    projection: dict[str, Any] | None = None  # the active generation
    active_rules: dict[str, Any] = field(default_factory=dict)  # version, digest, source
    kept_facts: dict[str, int] = field(default_factory=dict)  # accounts, current (this fold version)
    follow: dict[str, Any] | None = None  # projections/follow/status.py (follow's section)
    blocked: dict[str, str] = field(default_factory=dict)  # legacy tables blocked by their schema -> why
    streams: list[dict[str, Any]] = field(default_factory=list)  # the change streams as their reader last found them

    @property
    def outbox_waiting(self) -> int:
        return self.outbox.get("ready", 0) + self.outbox.get("held", 0)

    def as_json(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "projection": self.projection,
            "active_rules": self.active_rules,
            "kept_facts": self.kept_facts,
            "log": {"events": self.log_events, "accounts": self.accounts},
            "sources": [{"source": s.source, "checkpoint_at": s.updated_at.isoformat(),
                         "age_seconds": round(s.age_seconds, 3)} for s in self.sources],
            "parked_records": sum(self.parked.values()),
            "parked_by_table": self.parked,
            "blocked_tables": self.blocked,
            "stripe_waiting": self.stripe_waiting,
            "accounts_disagreeing": None if self.last_apply is None else self.last_apply.get("accounts_disagreeing"),
            "drift_open": None if self.last_apply is None else self.last_apply.get("drift_open"),
            "outbox": {"waiting": self.outbox_waiting, **self.outbox},
            "last_apply": self.last_apply,
            "follow": self.follow,
            "streams": self.streams,
        }


def read_status(stores: Stores, *, now: datetime, default_rules: Rules, default_source: str) -> Status:
    """`default_rules` (named by `default_source`: "RECOMPUTE_RULES" or "built in") are the active
    rules when no generation is active."""
    defaults = {"version": default_rules.version, "digest": default_rules.digest, "source": default_source}
    with stores.connect(purpose="status") as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cur = conn.cursor(row_factory=dict_row)
        if not has_log(conn):
            return Status(now=now, active_rules=defaults)  # nothing ingested yet: not even our tables exist
        generation = generations.active(conn)
        projection = None if generation is None else _projection(conn, generation)
        kept = _kept_facts(conn)
        log = one_row(cur.execute(f"SELECT {head(conn)} AS events, "
                                  "(SELECT count(*) FROM ingest_row_digest WHERE store = 'cf_prod' "
                                  "AND tbl = 'accounts' AND stream IS NOT NULL) AS accounts").fetchone())
        sources = [SourceCheckpoint(r["source"], r["updated_at"], (now - r["updated_at"]).total_seconds())
                   for r in cur.execute("SELECT source, updated_at FROM ingest_checkpoint ORDER BY source")]
        parked = {f"{r['source']} {r['tbl']}": r["n"] for r in cur.execute(
            "SELECT source, tbl, count(*) AS n FROM parked_record WHERE resolved_at IS NULL "
            "GROUP BY source, tbl ORDER BY source, tbl")}
        waiting = count_waiting(conn)
        outbox = {r["status"]: r["n"] for r in cur.execute(
            "SELECT status, count(*) AS n FROM outbox_event GROUP BY status ORDER BY status")}
        follow = follow_status(conn)
        blocked = recorded_blocks(conn)
        streams = [] if not has_tables(conn, "cdc_stream_health") else [
            {"store": r["store"], "state": "broken" if r["broken"] else "streaming", "reason": r["broken"],
             "broken_since": r["broken_since"] and r["broken_since"].isoformat(),
             "snapshot_tables": r["snapshot_tables"], "updated_at": r["updated_at"].isoformat()}
            for r in cur.execute("SELECT store, broken, broken_since, snapshot_tables, updated_at "
                                 "FROM cdc_stream_health ORDER BY store")]
        run = cur.execute("SELECT run_id, started_at, finished_at, as_of, rules_version, summary FROM apply_run "
                          "ORDER BY started_at DESC LIMIT 1").fetchone()
    last_apply = None if run is None else {
        "run_id": str(run["run_id"]), "started_at": run["started_at"].isoformat(),
        "finished_at": run["finished_at"] and run["finished_at"].isoformat(), "as_of": run["as_of"].isoformat(),
        "rules_version": run["rules_version"], **(run["summary"] or {})}
    active = defaults if generation is None else {
        "version": generation.rules.version, "digest": generation.rules.digest, "source": f"generation {generation.id}"}
    return Status(now=now, log_events=log["events"], accounts=log["accounts"], sources=sources, parked=parked,
                  stripe_waiting=waiting, outbox=outbox, last_apply=last_apply, projection=projection,
                  active_rules=active, kept_facts=kept, follow=follow, blocked=blocked, streams=streams)


def _projection(conn: psycopg.Connection, generation: Generation) -> dict[str, Any]:
    """The active generation as `status` shows it: the accounts its built partitions checked (a
    generation `project` made has none built: then the accounts it keeps a state of), and the highest
    log position its partitions or its followers reflect."""
    row = conn.execute("SELECT count(*), coalesce(sum(accounts), 0)::bigint, coalesce(sum(events), 0)::bigint, max(position) "
                       "FROM read_model_partition WHERE generation = %s", (generation.id,)).fetchone()
    partitions_built, accounts, events, position = row if row else (0, 0, 0, None)
    if not partitions_built:
        accounts = one_row(conn.execute("SELECT count(*) FROM read_model_state WHERE generation = %s",
                                        (generation.id,)).fetchone())[0]
    if has_tables(conn, "follow_position"):
        followed = one_row(conn.execute("SELECT max(position) FROM follow_position WHERE generation = %s",
                                        (generation.id,)).fetchone())[0]
        position = followed if position is None else max(position, followed if followed is not None else position)
    return {
        "generation": generation.id, "rules_version": generation.rules.version,
        "rules_digest": generation.rules.digest, "as_of": generation.as_of.isoformat(),
        "accounts": accounts, "events": events, "partitions": generation.partitions,
        "partitions_built": partitions_built, "position": position,
        "built_at": generation.built_at and generation.built_at.isoformat(),
        "activated_at": generation.activated_at and generation.activated_at.isoformat(),
    }


def _kept_facts(conn: psycopg.Connection) -> dict[str, int]:
    if not has_tables(conn, "read_model_facts"):
        return {"accounts": 0, "current": 0}
    row = conn.execute("SELECT count(*), count(*) FILTER (WHERE fold_version = %s) FROM read_model_facts",
                       (FOLD_VERSION,)).fetchone()
    return {"accounts": row[0], "current": row[1]} if row else {"accounts": 0, "current": 0}


def render_status(status: Status) -> str:
    rules = status.active_rules
    p = status.projection
    lines = [f"projection: none (no backfill applied yet); active rules {rules['version']} (digest {rules['digest']}, "
             f"{rules['source']})" if p is None else
             f"projection: generation {p['generation']}, rules {p['rules_version']} (digest {p['rules_digest']}), "
             f"as of {p['as_of']}, {p['accounts']} accounts, log position {p['position']}; built {p['built_at']}, "
             f"activated {p['activated_at']}",
             f"kept facts: {status.kept_facts.get('accounts', 0)} accounts "
             f"({status.kept_facts.get('current', 0)} of this fold version)",
             f"log: {status.log_events} events, {status.accounts} accounts (cf_prod.accounts rows recorded)"]
    lines.append("sources (last checkpoint, age):" if status.sources else "sources: nothing ingested yet")
    for s in status.sources:
        lines.append(f"  {s.source:<40} {s.updated_at.isoformat(timespec='seconds')}  {_age(s.age_seconds)}")
    lines.append(f"parked records: {sum(status.parked.values())}"
                 + "".join(f"\n  {where:<40} {n}" for where, n in status.parked.items()))
    lines.append(f"stripe records waiting for their customer's account: {status.stripe_waiting}")
    lines.append(f"blocked tables (schema not the one read; nothing of them recorded or corrected): "
                 f"{len(status.blocked)}" + "".join(f"\n  {line}" for line in describe(status.blocked)))
    run = status.last_apply
    lines.append("last apply: none" if run is None else
                 f"last apply: {run['started_at']} as of {run['as_of']}, rules {run['rules_version']}: "
                 f"{run.get('accounts_disagreeing', '?')} accounts disagreeing, {run.get('applied', '?')} applied"
                 + ("" if run["finished_at"] else " (did not finish: the next apply settles it)"))
    for owner, causes in ((run or {}).get("drift_open") or {}).items():
        lines.append(f"  drift open at that apply, {owner}: " + ", ".join(f"{n} {cause}" for cause, n in causes.items()))
    lines += follow_lines(status.follow)
    for stream in status.streams:
        lines.append(f"{stream['store']} change stream: " + (
            f"broken since {stream['broken_since']}: {stream['reason']}" if stream["reason"] else "streaming")
            + (f"; {', '.join(stream['snapshot_tables'])} read by snapshot" if stream["snapshot_tables"] else ""))
    lines.append(f"outbox: {status.outbox_waiting} waiting"
                 + "".join(f", {n} {state}" for state, n in status.outbox.items()))
    return "\n".join(lines)


def _age(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit} ago"
    return f"{seconds:.0f}s ago"
