"""Benchmark: `plan` over a whole fleet against the floor, `explain` of a long account, and plan's memory.

    .venv/bin/python scripts/bench_plan.py [--accounts 10000] [--drifting 691] [--reuse]
    .venv/bin/python scripts/bench_plan.py --rss 10000 50000

The first form builds (or with --reuse keeps) a fleet in scratch databases on the local
PostgreSQL, ingests it, and prints: events in the log; plan wall time and events/s; in the same
run the time psycopg takes to read the whole event table with COPY (...) TO STDOUT (FORMAT BINARY),
the floor; the ratio; and explain of one account with 1,000 events (median of 20).
The --rss form runs plan in a fresh process per fleet size and prints each one's peak RSS.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from domain.events import LegacyRowObserved  # noqa: E402
from domain.legacy_tables import STORES  # noqa: E402
from domain.rules import RULES_V1  # noqa: E402
from eventlog.account_log import append_events  # noqa: E402
from eventlog.own_tables import ensure_own_schema  # noqa: E402
from eventlog.postgres_log import PostgresEventLog  # noqa: E402
from eventlog.stores import Stores  # noqa: E402
from ingestion.jobs import IngestJob, run_ingest  # noqa: E402
from ingestion.stripe.ingester import StripeIngester  # noqa: E402
from projections.explain import explain  # noqa: E402
from projections.plan import plan  # noqa: E402
from simulation.fleet import build_fleet  # noqa: E402
from simulation.harness.databases import named_database  # noqa: E402
from simulation.world_reader import WorldFileReader  # noqa: E402

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def ingested_fleet(accounts: int, drifting: int, *, reuse: bool, prefix: str = "bench_plan") -> dict[str, str]:
    """`prefix`: the databases' prefix (each script names its own: bench_read_model, bench_report)."""
    prefix = f"{prefix}_{accounts}"
    dsns = {}
    kept = True
    for store in (*STORES, "eventstore"):
        dsns[store], was_kept = named_database(f"{prefix}_{store}", keep=reuse)
        kept = kept and was_kept
    if kept:
        return dsns
    world = Path(f"/tmp/{prefix}_stripe")
    started = time.perf_counter()
    build_fleet({s: dsns[s] for s in STORES}, accounts=accounts, seed=7, drifting=drifting, now=NOW, stripe_dir=world)
    ensure_own_schema(dsns["eventstore"])
    stores = Stores.from_dsns(dsns)
    run_ingest([IngestJob(source=s, stores=stores) for s in STORES])
    StripeIngester(reader=WorldFileReader(world), stores=stores).run()
    print(f"fleet of {accounts} accounts built and ingested in {time.perf_counter() - started:.0f}s", flush=True)
    return dsns


def copy_floor(eventstore: str) -> tuple[int, float]:
    rows, started = 0, time.perf_counter()
    with psycopg.connect(eventstore) as conn, conn.cursor() as cur:
        with cur.copy("COPY (SELECT originator_id, originator_version, topic, state FROM recompute_events) "
                      "TO STDOUT (FORMAT BINARY)") as copy:
            copy.set_types(["text", "int8", "text", "bytea"])
            for _ in copy.rows():
                rows += 1
    return rows, time.perf_counter() - started


def a_long_account(eventstore: str, events: int = 1_000) -> str:
    """acc_long: an account whose invoice row changed `events` times (plus the account row)."""
    account, at = "acc_long", NOW - timedelta(days=400)
    with psycopg.connect(eventstore) as conn:
        if conn.execute("SELECT 1 FROM recompute_events WHERE originator_id = %s", (account,)).fetchone():
            return account
        rows = [LegacyRowObserved(
            originator_id=account, originator_version=0, store="cf_prod", table="accounts",
            key={"account_id": account}, position="bench", source_time=at, recorded_at=at,
            row={"account_id": account, "name": "Long", "plan": "pro", "status": "active",
                 "created_at": at.isoformat(), "updated_at": at.isoformat()})]
        for i in range(events - 1):
            t = at + timedelta(hours=i)
            rows.append(LegacyRowObserved(
                originator_id=account, originator_version=0, store="billing_prod", table="invoices",
                key={"invoice_id": f"inv_long_{i % 12:02d}"}, position="bench", source_time=t, recorded_at=t,
                row={"invoice_id": f"inv_long_{i % 12:02d}", "account_id": account, "stripe_invoice_id": None,
                     "status": "open" if i % 3 else "paid", "currency": "usd", "amount_due": 2900,
                     "amount_paid": 0, "due_at": (t + timedelta(days=7)).isoformat(),
                     "created_at": at.isoformat(), "updated_at": t.isoformat()}))
        with conn.transaction():
            append_events(conn, rows)
    return account


def bench(accounts: int, drifting: int, reuse: bool) -> None:
    dsns = ingested_fleet(accounts, drifting, reuse=reuse)
    floor_rows, floor_seconds = copy_floor(dsns["eventstore"])
    started = time.perf_counter()
    result = plan(Stores.from_dsns(dsns), RULES_V1, NOW, workers=2)
    plan_seconds = time.perf_counter() - started
    plan_rate, floor_rate = result.events_folded / plan_seconds, floor_rows / floor_seconds
    print(f"events in the log         {floor_rows:>10,}")
    print(f"plan                      {plan_seconds:>10.2f} s  {plan_rate:>10,.0f} events/s  "
          f"({result.accounts_checked} accounts, {result.accounts_disagreeing} disagreeing, "
          f"{len(result.corrections)} corrections; with --reuse the log also holds acc_long, explain's account)")
    print(f"floor: COPY binary        {floor_seconds:>10.2f} s  {floor_rate:>10,.0f} rows/s")
    print(f"plan / floor              {plan_rate / floor_rate:>10.2f}   (target >= 0.33)")
    account = a_long_account(dsns["eventstore"])
    log = PostgresEventLog(Stores.from_dsns(dsns))
    for label, kwargs in (("cold: opens the log", {}), ("the log open", {"log": log})):
        timings = []
        for _ in range(20):
            started = time.perf_counter()
            explained = explain(Stores.from_dsns(dsns), account, RULES_V1, NOW, **kwargs)
            timings.append(time.perf_counter() - started)
        print(f"explain, {len(explained.timeline):,} events, {label:<20} {statistics.median(timings) * 1000:>6.1f} ms "
              f"median, {max(timings) * 1000:.1f} ms max   (target <= 50 ms)")
    log.close()


def rss(sizes: list[int]) -> None:
    for accounts in sizes:
        dsns = ingested_fleet(accounts, accounts * 691 // 10_000, reuse=True)
        # The parent's peak is VmHWM: ru_maxrss survives fork+exec on Linux, so it would report this
        # script's own peak (it may have just built the fleet in memory). Workers fork from a small
        # parent, so RUSAGE_CHILDREN is theirs.
        code = (f"import sys, resource; sys.path.insert(0, {str(ROOT)!r}); from datetime import datetime, UTC; "
                "from domain.rules import RULES_V1; from projections.plan import plan; "
                f"from eventlog.stores import Stores; r = plan(Stores.from_dsns({dsns!r}), RULES_V1, datetime(2026, 3, 1, tzinfo=UTC), workers=2); "
                "hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')); "
                "print(r.events_folded, hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
        events, parent_kb, worker_kb = map(int, out)
        print(f"plan over {accounts:>6,} accounts ({events:,} events): peak RSS "
              f"{worker_kb / 1024:.0f} MiB per worker, {parent_kb / 1024:.0f} MiB parent")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--drifting", type=int, default=691)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--rss", type=int, nargs="*", help="fleet sizes to measure plan's peak RSS at")
    args = parser.parse_args()
    if args.rss:
        rss(args.rss)
    else:
        bench(args.accounts, args.drifting, args.reuse)


if __name__ == "__main__":
    main()
