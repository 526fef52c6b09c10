"""Benchmark: `backfill` over a whole fleet against the floor, its workers' memory, where the time goes.

    .venv/bin/python scripts/bench_backfill.py [--accounts 10000] [--drifting 691] [--workers 2] [--reuse]

Builds (or with --reuse keeps) an ingested fleet in databases named bench_backfill_<accounts>_* on
the local PostgreSQL (scripts/bench_plan.py's builder), drops any read-model generation in them,
and in one run prints: the binary COPY of the whole event table (`COPY (SELECT * FROM
recompute_events) TO STDOUT (FORMAT binary)`, read and discarded: the floor); the backfill
(rules v1 with suspension at 30 days, against v1; 32 partitions on a Dask LocalCluster of
--workers processes, its start included) in events/s and as a share of the floor; each worker's
peak RSS; `plan --rules` on the same cluster for comparison; the ceiling of any fold on this
machine: the same reads with nothing decoded, folded or written, on the same cluster: as the
backfill's tasks read them (--workers tasks of 32/--workers partitions), as 32 tasks of one partition
would, and in the cheapest layout (one account range per worker:
each legacy table scanned once per worker); and one partition run again inline under cProfile, split into reading,
folding, the true state, the active rules' fields, the diff and the COPY of the states.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_plan import ingested_fleet  # noqa: E402

from domain.legacy_tables import COMPARED_BY_STORE  # noqa: E402
from domain.partitions import PARTITIONS, partition_of  # noqa: E402
from domain.rules import RULES_V1, parse_rules  # noqa: E402
from eventlog.account_range import AccountRange  # noqa: E402
from eventlog.parked import parked_rows  # noqa: E402
from eventlog.range_reads import _event_rows, logged_accounts  # noqa: E402
from eventlog.stores import Stores  # noqa: E402
from projections.evaluation.ranges import account_ranges  # noqa: E402
from projections.legacy_rows import legacy_rows  # noqa: E402
from projections.plan import plan  # noqa: E402
from projections.read_model.backfill import _jobs, backfill  # noqa: E402
from projections.read_model.partition import build_partitions  # noqa: E402
from recompute.dask_executor import DaskExecutor  # noqa: E402
from tests.e2e.test_backfill_fleet import RULES_V2  # noqa: E402

NOW = datetime(2026, 3, 1, tzinfo=UTC)
TARGET = 0.15  # issue 23: a backfill at 0.15 of the COPY's speed
PHASES = {  # cProfile function name -> phase (cumulative time)
    "truth_events": "read the log (COPY + decode)", "legacy_rows": "read the legacy rows",
    "fold": "fold", "true_state": "true state (new rules)", "ruled_fields": "active rules' fields",
    "corrections_for": "diff against legacy",
    "write_row": "COPY the states out", "model_dump_json": "states to JSON"}


def copy_floor(eventstore: str) -> tuple[int, float]:
    size, started = 0, time.perf_counter()
    with psycopg.connect(eventstore) as conn, conn.cursor() as cur:
        with cur.copy("COPY (SELECT * FROM recompute_events) TO STDOUT (FORMAT binary)") as copy:
            for chunk in copy:
                size += len(chunk)
    return size, time.perf_counter() - started


def peak_rss_kb() -> int:
    """This process's peak RSS. VmHWM, not ru_maxrss: ru_maxrss survives fork+exec on Linux, so a
    worker spawned by a parent that has just built the fleet would report the parent's peak."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))


Read = tuple[dict[str, str], AccountRange]


def reads_only(item: Read) -> int:
    """What a partition reads (its events' rows, its parked rows, every store's rows of its
    accounts), nothing decoded, folded, diffed or written: the floor of any fold over these reads."""
    dsns, accounts = item
    stores = Stores.from_dsns(dsns)
    rows = sum(1 for _ in _event_rows(stores, accounts))
    parked_rows(stores, accounts)
    for store in COMPARED_BY_STORE:
        rows += sum(1 for _ in legacy_rows(stores, store, accounts))
    return rows


def timed_reads(executor: DaskExecutor, items: list[Read]) -> float:
    started = time.perf_counter()
    list(executor.map(reads_only, items))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--drifting", type=int, default=691)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()
    dsns = ingested_fleet(args.accounts, args.drifting, reuse=args.reuse, prefix="bench_backfill")
    rules = parse_rules(RULES_V2)
    with psycopg.connect(dsns["eventstore"]) as conn:
        if conn.execute("SELECT to_regclass('read_model_generation')").fetchone()[0] is not None:
            conn.execute("DELETE FROM read_model_generation")
        events = conn.execute("SELECT count(*) FROM recompute_events").fetchone()[0]
    size, floor_s = copy_floor(dsns["eventstore"])
    print(f"{args.accounts} accounts, {events} events; binary COPY of the event table: {size / 1e6:.0f} MB in "
          f"{floor_s:.2f}s = {events / floor_s:,.0f} events/s", flush=True)

    started = time.perf_counter()
    with DaskExecutor(workers=args.workers) as executor:
        result = backfill(Stores.from_dsns(dsns), rules, RULES_V2, RULES_V1, NOW, executor=executor, now=NOW,
                          tasks=args.workers)
        took = time.perf_counter() - started
        rss = executor.connect().run(peak_rss_kb)
        started = time.perf_counter()
        planned = plan(Stores.from_dsns(dsns), rules, NOW, workers=args.workers, executor=executor, kept_facts=False)  # a full replay
        plan_s = time.perf_counter() - started
        ids = logged_accounts(Stores.from_dsns(dsns))
        parts = [AccountRange(ids=tuple(a for a in ids if partition_of(a) == p)) for p in range(PARTITIONS)]
        tasks = _jobs(Stores.from_dsns(dsns), result.generation, rules, RULES_V1, 0, list(range(PARTITIONS)),
                      args.workers)
        reads = {f"{args.workers} tasks of {PARTITIONS // args.workers} partitions, as the backfill reads them": timed_reads(
                     executor, [(dsns, AccountRange(ids=job.account_ids)) for job in tasks]),
                 "32 partitions, one task each": timed_reads(executor, [(dsns, a) for a in parts]),
                 f"{args.workers} ranges, one per worker": timed_reads(
                     executor, [(dsns, r) for r in account_ranges(Stores.from_dsns(dsns), args.workers)])}
    rate = result.events_replayed / took
    print(f"backfill, {args.workers} workers, 32 partitions in {args.workers} tasks: {result.events_replayed} events in {took:.2f}s = "
          f"{rate:,.0f} events/s = {rate / (events / floor_s):.2f} of the COPY floor; "
          f"{result.accounts_changing} accounts changing, {result.accounts_disagreeing} disagreeing")
    print("peak RSS per worker: " + ", ".join(f"{kb / 1024:.0f} MB" for kb in sorted(rss.values())))
    print(f"plan --rules on the same cluster (started): {planned.events_folded} events in {plan_s:.2f}s = "
          f"{planned.events_folded / plan_s:,.0f} events/s; backfill/plan = {rate / (planned.events_folded / plan_s):.2f}")
    for label, seconds in reads.items():
        print(f"reads alone, nothing decoded, folded or written ({label}): {seconds:.2f}s = "
              f"{floor_s / seconds:.2f} of the COPY floor; a backfill at {TARGET} of the floor would have "
              f"{floor_s / TARGET - seconds:+.2f}s left for all its other work")
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    job = _jobs(Stores.from_dsns(dsns), result.generation, rules, RULES_V1, 0, [0])[0]
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.runcall(build_partitions, job)
    whole = time.perf_counter() - started
    stats = pstats.Stats(profile)
    print(f"partition 0 inline ({len(job.account_ids)} accounts), under cProfile {whole:.2f}s; cumulative:")
    for (_, _, name), (_, _, _, cumulative, _) in sorted(stats.stats.items(), key=lambda kv: -kv[1][3]):  # type: ignore[attr-defined]
        if name in PHASES:
            print(f"  {PHASES.pop(name):<32} {cumulative:6.2f}s  {cumulative / whole:5.0%}")


if __name__ == "__main__":
    main()
