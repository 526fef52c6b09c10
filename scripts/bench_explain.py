#!/usr/bin/env python
"""Benchmark: `explain` of one account with 1,000 events, the log open, warm; and where its time goes.

    .venv/bin/python scripts/bench_explain.py [--runs 5] [--profile]

Makes a scratch event store `bench_explain_eventstore` on the local PostgreSQL (RECOMPUTE_TEST_PG,
default 127.0.0.1:5432; dropped after): the product catalog and `acc_long`, bench_plan's account of
1,000 events (its invoice rows changing every hour). `explain` only reads the event store, so the
legacy stores' strings name it too. Opens the log once (as `recompute explain` and the report do),
explains the account once to warm up, then --runs times, and prints p50/p99 of the whole call and
the p50 of each part: the two streams, the parked records and the audit (on one connection, as
`explain` reads them), the pure explanation, and `render_text` (not in the total: the CLI's
printing). --profile: cProfile of one more call, the top functions by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from bench_plan import NOW, a_long_account  # noqa: E402

from domain.events import CATALOG_STREAM, LegacyRowObserved  # noqa: E402
from domain.rules import RULES_V1  # noqa: E402
from eventlog.account_log import append_events  # noqa: E402
from eventlog.own_tables import ensure_own_schema  # noqa: E402
from eventlog.parked import parked_records  # noqa: E402
from eventlog.postgres_log import PostgresEventLog  # noqa: E402
from eventlog.stores import STORE_NAMES, Stores  # noqa: E402
from projections.apply.audit import account_audit  # noqa: E402
from projections.explain import explain, explanation, read_streams, render_text  # noqa: E402
from simulation.harness.databases import dsn_for, named_database  # noqa: E402
from simulation.records import PLAN_FEATURES  # noqa: E402

DATABASE = "bench_explain_eventstore"


def a_catalog(eventstore: str) -> None:
    """Which features each plan includes, as ingest records cf_prod.product_config."""
    since = datetime(2025, 1, 1, tzinfo=UTC)
    rows = [LegacyRowObserved(originator_id=CATALOG_STREAM, originator_version=0, store="cf_prod",
                              table="product_config", key={"plan": plan, "feature": feature}, position="bench",
                              source_time=since, recorded_at=since, row={"plan": plan, "feature": feature})
            for plan, features in PLAN_FEATURES.items() for feature in sorted(features)]
    with psycopg.connect(eventstore) as conn, conn.transaction():
        append_events(conn, rows)


def timed(runs: int, call: Callable[[], Any]) -> list[float]:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return timings


def ms(timings: list[float], share: float) -> float:
    ordered = sorted(timings)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000


def parked_and_audit(stores: Stores, account: str) -> None:
    """What `explain` reads besides the streams: on one connection, as it does."""
    with stores.connect(purpose="explain") as conn:
        parked_records(conn, account)
        account_audit(conn, account)


def bench(stores: Stores, account: str, runs: int, profile: bool) -> None:
    with PostgresEventLog(stores) as log:
        ex = explain(stores, account, RULES_V1, NOW, log=log)  # warm: the library's pool, caches, imports
        whole = timed(runs, lambda: explain(stores, account, RULES_V1, NOW, log=log))
        events, catalog = read_streams(log, account)
        with stores.connect() as conn:
            past, _ = account_audit(conn, account)
        parts = {
            "the two streams (log.stream)": timed(runs, lambda: read_streams(log, account)),
            "parked records + audit (1 conn)": timed(runs, lambda: parked_and_audit(stores, account)),
            "explanation (pure)": timed(runs, lambda: explanation(account, events, catalog, RULES_V1, NOW,
                                                                   past=past)),
        }
        rendering = timed(runs, lambda: render_text(ex))
        if profile:
            profiler = cProfile.Profile()
            profiler.runcall(lambda: explain(stores, account, RULES_V1, NOW, log=log))
    print(f"explain {account}: {len(ex.timeline):,} events in the timeline, {len(ex.corrections)} corrections, "
          f"{len(catalog)} catalog events; {runs} runs warm, the log open; load average {os.getloadavg()[0]:.1f}")
    print(f"  explain (the call)                 p50 {ms(whole, 0.5):6.1f} ms  p99 {ms(whole, 0.99):6.1f} ms"
          "   (target <= 50 ms)")
    for label, timings in parts.items():
        print(f"    {label:<32} p50 {ms(timings, 0.5):6.1f} ms")
    print(f"  render_text (not in the call)      p50 {ms(rendering, 0.5):6.1f} ms")
    print(f"  mean of the call {statistics.mean(whole) * 1000:.1f} ms")
    if profile:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile one more call (top 25 by cumulative time)")
    args = parser.parse_args()
    eventstore, _ = named_database(DATABASE)
    try:
        ensure_own_schema(eventstore)
        a_catalog(eventstore)
        account = a_long_account(eventstore)
        bench(Stores.from_dsns(dict.fromkeys(STORE_NAMES, eventstore)), account, args.runs, args.profile)
    finally:
        with psycopg.connect(dsn_for("postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))


if __name__ == "__main__":
    main()
