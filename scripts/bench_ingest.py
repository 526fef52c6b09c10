"""Benchmark: snapshot ingest of a generated fleet, against a plain COPY of the same tables.

    .venv/bin/python scripts/bench_ingest.py [--accounts 10000] [--drifting 691] [--reuse]

Builds the fleet in scratch databases on the local PostgreSQL (RECOMPUTE_TEST_PG, default
127.0.0.1:5432), serves its Stripe world from the stand-in in a separate process, then prints:
legacy rows read, Stripe events read, events appended, rows/s of the legacy snapshot, events/s of
the Stripe catch-up, and in the same run the rows/s of `COPY (SELECT * FROM t) TO STDOUT` of every
legacy table read by psycopg (the floor), and the ratio.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from domain.legacy_tables import TABLES_BY_STORE  # noqa: E402
from eventlog.own_tables import ensure_own_schema  # noqa: E402
from eventlog.stores import Stores  # noqa: E402
from ingestion.jobs import IngestJob, run_ingest  # noqa: E402
from ingestion.stripe.ingester import StripeIngester  # noqa: E402
from ingestion.stripe.reader import StripeApiReader  # noqa: E402
from simulation.fleet import build_fleet  # noqa: E402
from simulation.harness.databases import named_database  # noqa: E402

NOW = datetime(2026, 3, 1, tzinfo=UTC)
API_KEY = "sk_test_bench"


def copy_floor(dsns: dict[str, str]) -> tuple[int, float]:
    rows, started = 0, time.perf_counter()
    for store, specs in TABLES_BY_STORE.items():
        with psycopg.connect(dsns[store]) as conn, conn.cursor() as cur:
            for spec in specs:
                query = sql.SQL("COPY (SELECT * FROM {}) TO STDOUT").format(sql.Identifier(spec.table))
                with cur.copy(query) as copy:
                    for _ in copy.rows():
                        rows += 1
    return rows, time.perf_counter() - started


def start_standin(world_dir: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "stripe_standin.py"), "--world",
                                str(world_dir), "--api-key", API_KEY, "--port", "0"],
                               stdout=subprocess.PIPE, text=True)
    return process, process.stdout.readline().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--drifting", type=int, default=691)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--reuse", action="store_true", help="keep a fleet built by an earlier run")
    args = parser.parse_args()

    prefix = f"bench_ingest_{args.accounts}"
    dsns = {store: named_database(f"{prefix}_{store}", keep=args.reuse)[0] for store in TABLES_BY_STORE}
    world_dir = Path(f"/tmp/{prefix}_stripe")
    if not (args.reuse and (world_dir / "meta.json").exists()):
        started = time.perf_counter()
        build_fleet(dsns, accounts=args.accounts, seed=args.seed, drifting=args.drifting, now=NOW,
                    stripe_dir=world_dir)
        print(f"fleet: {args.accounts} accounts built in {time.perf_counter() - started:.1f}s")
    eventstore, _ = named_database(f"{prefix}_eventstore")
    ensure_own_schema(eventstore)

    floor_rows, floor_seconds = copy_floor(dsns)
    legacy_rows = appended = 0
    started = time.perf_counter()
    stores = Stores.from_dsns({**dsns, "eventstore": eventstore})
    jobs = [IngestJob(source=store, stores=stores) for store in TABLES_BY_STORE]
    for report in run_ingest(jobs):  # tables side by side in one snapshot per store, as `recompute ingest` does
        legacy_rows += report.rows_read
        appended += report.appended
    legacy_seconds = time.perf_counter() - started

    standin, base_url = start_standin(world_dir)
    try:
        reader = StripeApiReader(api_key=API_KEY, api_base=base_url, max_network_retries=0)
        started = time.perf_counter()
        stripe_report = StripeIngester(reader=reader, stores=stores).run()
        stripe_seconds = time.perf_counter() - started
    finally:
        standin.terminate()

    print(f"legacy rows read        {legacy_rows:>10,}")
    print(f"stripe events read      {stripe_report.rows_read:>10,}  (list objects + Events API)")
    print(f"events appended         {appended + stripe_report.appended:>10,}")
    print(f"legacy snapshot ingest  {legacy_rows / legacy_seconds:>10,.0f} rows/s   ({legacy_seconds:.1f}s)")
    print(f"plain COPY of the same  {floor_rows / floor_seconds:>10,.0f} rows/s   ({floor_seconds:.1f}s)")
    print(f"ingest / COPY           {(legacy_rows / legacy_seconds) / (floor_rows / floor_seconds):>10.2f}")
    print(f"stripe catch-up         {stripe_report.rows_read / stripe_seconds:>10,.0f} events/s ({stripe_seconds:.1f}s)")


if __name__ == "__main__":
    main()
