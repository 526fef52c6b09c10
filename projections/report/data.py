"""The report's data: one pass over the fleet as `plan` makes it, and the event store's history.

    gather(stores, rules, as_of, workers=) -> ReportData

The pass is plan's own (the evaluation engine, projections/evaluation/engine.py, one process per
range of accounts), but it keeps counts instead of corrections (aggregate.py). The history is read in one REPEATABLE READ
transaction: corrections applied over time by table (`correction_audit`), those of each reviewed
plan (`apply --plan`, by its digest), the domain events of
the outbox by type and status, the parked records by reason; and, once followers of `project`
have corrected something, the correction lag (from `caused_at`, when what caused a correction
happened, to `settled_at`, when it committed) as p50/p99/max per bucket of the committed times. The top drifting accounts are
explained (projections/explain.py) for the page. Writes nothing.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby
from operator import attrgetter
from typing import Any

from psycopg.rows import dict_row

from domain.catalog import Catalog, fold_catalog
from domain.diff import Correction
from domain.owners import NO_OVERRIDES, Owners
from domain.rules import Rules
from domain.state import TrueState
from eventlog.account_range import AccountRange
from eventlog.one_row import one_row
from eventlog.postgres_log import PostgresEventLog
from eventlog.processes import worker_pool
from eventlog.range_reads import catalog_events
from eventlog.stores import Stores
from eventlog.tables_present import has_columns, has_tables
from ingestion.legacy.schema import blocked_tables
from projections.apply.audit import applied_corrections
from projections.drift import attach_drift
from projections.evaluation.engine import evaluate
from projections.evaluation.ranges import account_ranges
from projections.evaluation.sources import StoreReader
from projections.explain import explain, render_text
from projections.report.aggregate import Aggregate, applied_times

# A bucket of the "over time" charts: the smallest unit that keeps the bars at most MAX_BUCKETS.
BUCKETS = (("minute", 60), ("hour", 3_600), ("day", 86_400), ("week", 604_800), ("month", 2_629_746))
MAX_BUCKETS = 60
_IDS = re.compile(r"\b(evt|cus|in|sub|acc|inv|ch|pi|price|prod)_[A-Za-z0-9_]+")


@dataclass
class History:
    """What the event store remembers: applied corrections, the outbox, parked records."""

    bucket: str = "day"
    applied: list[dict[str, Any]] = field(default_factory=list)  # {"at", "table", "n"} per bucket and table
    audit_status: dict[str, int] = field(default_factory=dict)  # applied | stale | abandoned | pending -> rows
    outbox: list[dict[str, Any]] = field(default_factory=list)  # {"type", "status", "n"}
    sent: list[dict[str, Any]] = field(default_factory=list)  # {"at", "n"}: events published per bucket
    parked: list[dict[str, Any]] = field(default_factory=list)  # {"source", "table", "reason", "n", "examples"}
    plans: list[dict[str, Any]] = field(default_factory=list)  # {"plan_digest", "table", "applied", "stale", "first"}


@dataclass
class ReportData:
    as_of: datetime
    rules_version: str
    fleet: Aggregate
    history: History = field(default_factory=History)
    lag: list[dict[str, Any]] | None = None  # continuous projection's correction lag; None: no source yet
    explanations: dict[str, str] = field(default_factory=dict)  # account -> explain's text


def gather(stores: Stores, rules: Rules, as_of: datetime, *, workers: int = 2,
           owners: Owners = NO_OVERRIDES) -> ReportData:
    catalog = fold_catalog(catalog_events(stores), as_of=as_of)
    fleet = Aggregate()
    ranges = account_ranges(stores, workers)
    if len(ranges) == 1:
        fleet.merge(aggregate_range(stores, rules, as_of, catalog, ranges[0], owners))
    else:
        with worker_pool(len(ranges)) as pool:
            for part in pool.map(aggregate_range, *zip(*[(stores, rules, as_of, catalog, r, owners)
                                                          for r in ranges], strict=True)):
                fleet.merge(part)
    data = ReportData(as_of=as_of, rules_version=rules.version, fleet=fleet, history=read_history(stores))
    data.lag = read_lag(stores, data.history.bucket)
    data.explanations = explanations(stores, [account for _, account in fleet.top], rules, as_of, owners)
    return data


def aggregate_range(stores: Stores, rules: Rules, as_of: datetime, catalog: Catalog,
                    accounts: AccountRange, owners: Owners | None = None) -> Aggregate:
    """One range of accounts, counted: the unit of work of one process; with `owners`, where the
    drift came from too (projections/drift.py, the drifting accounts only)."""
    counts = Aggregate()
    drifting: list[Correction] = []
    for e in evaluate(StoreReader(stores), rules, as_of, catalog, accounts, blocked=blocked_tables(stores)):
        assert isinstance(e.state, TrueState)  # states=True (the default): every state is decoded
        counts.add(e.state, e.corrections, e.held)
        drifting.extend(e.corrections)
    if owners is None or not drifting:
        return counts
    said = attach_drift(stores, catalog, rules, as_of, drifting, owners)
    rewritten = sorted({c.account_id for c in said if c.drift is not None and c.drift.cause == "overwrote_correction"})
    past = applied_corrections(stores, rewritten) if rewritten else {}
    for account_id, mine in groupby(said, key=attrgetter("account_id")):
        counts.add_drift(list(mine), as_of, applied_times(past.get(account_id, ())))
    return counts


def read_history(stores: Stores) -> History:
    data = History()
    with stores.connect(purpose="report") as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cur = conn.cursor(row_factory=dict_row)
        if has_tables(conn, "correction_audit", "outbox_event"):
            span = one_row(cur.execute("SELECT min(settled_at) AS first, max(settled_at) AS last "
                                       "FROM correction_audit WHERE status = 'applied'").fetchone())
            data.bucket = bucket_for(span["first"], span["last"])
            data.applied = cur.execute(
                "SELECT date_trunc(%s, settled_at) AS at, tbl AS table, count(*) AS n FROM correction_audit "
                "WHERE status = 'applied' GROUP BY 1, 2 ORDER BY 1, 2", (data.bucket,)).fetchall()
            data.audit_status = {r["status"]: r["n"] for r in cur.execute(
                "SELECT status, count(*) AS n FROM correction_audit GROUP BY 1 ORDER BY 1")}
            data.outbox = cur.execute("SELECT type, status, count(*) AS n FROM outbox_event "
                                      "GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
            data.sent = cur.execute("SELECT date_trunc(%s, sent_at) AS at, count(*) AS n FROM outbox_event "
                                    "WHERE status = 'sent' GROUP BY 1 ORDER BY 1", (data.bucket,)).fetchall()
            data.plans = cur.execute(  # the corrections of each reviewed plan (`apply --plan`), by table
                "SELECT plan_digest, tbl AS table, count(*) FILTER (WHERE status = 'applied') AS applied, "
                "count(*) FILTER (WHERE status = 'stale') AS stale, min(settled_at) AS first FROM correction_audit "
                "WHERE plan_digest IS NOT NULL GROUP BY 1, 2 ORDER BY min(min(settled_at)) OVER (PARTITION BY "
                "plan_digest), 1, 2").fetchall()
        if has_tables(conn, "parked_record"):
            data.parked = parked_by_reason(cur.execute(
                "SELECT source, tbl, reason, count(*) AS n, (array_agg(key ORDER BY id))[1:3] AS examples "
                "FROM parked_record WHERE resolved_at IS NULL GROUP BY 1, 2, 3").fetchall())
    return data


def read_lag(stores: Stores, bucket: str) -> list[dict[str, Any]] | None:
    """The followers' correction lag per `bucket` of the committed times; None when none has a cause time."""
    with stores.connect(purpose="report") as conn:
        if not has_columns(conn, "correction_audit", "caused_at"):
            return None
        return lag_by_bucket(conn.execute(
            "SELECT date_trunc(%s, settled_at), greatest(0, extract(epoch FROM settled_at - caused_at))::float8 "
            "FROM correction_audit WHERE status = 'applied' AND caused_at IS NOT NULL", (bucket,))) or None


def lag_by_bucket(rows: Iterable[tuple[datetime, float]]) -> list[dict[str, Any]]:
    """Pure: (bucket, lag in seconds) rows as {"at", "n", "p50", "p99", "max"} per bucket, in time order;
    a percentile is the nearest rank (a lag that happened, never one between two)."""
    lags: dict[datetime, list[float]] = {}
    for at, lag in rows:
        lags.setdefault(at, []).append(lag)
    return [{"at": at, "n": len(xs), "p50": _rank(xs, 0.50), "p99": _rank(xs, 0.99), "max": xs[-1]}
            for at, xs in sorted((at, sorted(xs)) for at, xs in lags.items())]


def _rank(ordered: list[float], share: float) -> float:
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def bucket_for(first: datetime | None, last: datetime | None) -> str:
    """The smallest unit of BUCKETS that spans first..last in at most MAX_BUCKETS bars."""
    if first is None or last is None:
        return "day"
    seconds = (last - first).total_seconds()
    return next((unit for unit, size in BUCKETS if seconds / size < MAX_BUCKETS), BUCKETS[-1][0])


def parked_by_reason(rows: list[dict[str, Any]], limit: int = 20) -> list[dict[str, Any]]:
    """Parked records grouped by source, table and reason with its ids taken out (a reason names the
    record's ids: one group per kind of problem, not per record), the largest groups first."""
    counts: Counter[tuple[str, str, str]] = Counter()
    examples: dict[tuple[str, str, str], list[str]] = {}
    for r in rows:
        key = (r["source"], r["tbl"], _IDS.sub("…", r["reason"]))
        counts[key] += r["n"]
        mine = examples.setdefault(key, [])
        mine.extend(k for k in r["examples"] if k not in mine)
        del mine[3:]
    return [{"source": source, "table": table, "reason": reason, "n": n, "examples": examples[(source, table, reason)]}
            for (source, table, reason), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]]


def explanations(stores: Stores, accounts: list[str], rules: Rules, as_of: datetime,
                 owners: Owners = NO_OVERRIDES) -> dict[str, str]:
    """explain's text of each account, read through one open log."""
    if not accounts:
        return {}
    log = PostgresEventLog(stores)
    try:
        return {account: render_text(explain(stores, account, rules, as_of, log=log, owners=owners))
                for account in accounts}
    finally:
        log.close()
