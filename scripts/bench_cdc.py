"""Benchmark: commit in a legacy store -> its event appended to the log, through the change stream.

    .venv/bin/python scripts/bench_cdc.py [--rate 500] [--seconds 30] [--invoices 1000]

--writers processes commit single-row transactions into billing_prod.invoices at --rate per second
(UPDATE of one invoice's amount_paid, round-robin over --invoices); this process reads the stream
with `LegacyChangeStream.poll` exactly as a follower does. The latency of an event is from its
source transaction's commit (the commit timestamp pgoutput carries, which the event's source_time
is) to the commit of the event-store transaction that appended it. Prints p50/p95/p99/max, the
rate reached, the events per event-store transaction, and checks every write is in the log once.
Databases `bench_cdc_billing_prod`, `bench_cdc_eventstore` on the local PostgreSQL (RECOMPUTE_TEST_PG),
made fresh; the slot is dropped at the end, also on failure.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eventlog.own_tables import ensure_own_schema  # noqa: E402
from eventlog.stores import Stores  # noqa: E402
from ingestion.legacy.cdc.setup import drop_store, setup_store  # noqa: E402
from ingestion.legacy.cdc.stream import LegacyChangeStream  # noqa: E402
from ingestion.legacy.observe import Observations  # noqa: E402
from simulation.harness.databases import named_database  # noqa: E402
from simulation.legacy_schema import create_legacy_schema  # noqa: E402


def writer(dsn: str, rate: float, seconds: float, invoices: range, counter) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        start, n = time.perf_counter(), 0
        while (elapsed := time.perf_counter() - start) < seconds:
            if n > elapsed * rate:
                time.sleep(max(0.0, n / rate - elapsed))
                continue
            conn.execute("UPDATE invoices SET amount_paid = amount_paid + 1 WHERE invoice_id = %s",
                         (f"inv_{invoices[n % len(invoices)]:06d}",))
            n += 1
        with counter.get_lock():
            counter.value += n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--invoices", type=int, default=1000)
    parser.add_argument("--writers", type=int, default=2, help="writer processes sharing --rate (one connection "
                        "commits ~400 tx/s on 2 shared cores)")
    args = parser.parse_args()
    legacy, _ = named_database("bench_cdc_billing_prod")
    eventstore, _ = named_database("bench_cdc_eventstore")
    with psycopg.connect(legacy) as conn:
        create_legacy_schema(conn, "billing_prod")
        conn.execute("INSERT INTO invoices SELECT 'inv_' || lpad(i::text, 6, '0'), 'acc_' || lpad(i::text, 6, '0'), "
                     "NULL, 'open', 'usd', 100000000, 0, '2026-03-01Z', '2026-03-01Z', '2026-03-01Z' "
                     "FROM generate_series(0, %s - 1) i", (args.invoices,))
    ensure_own_schema(eventstore)
    latencies: list[float] = []
    batches: list[int] = []
    commit = Observations.commit

    def timed_commit(self, *a, **k):  # measures, does not change what is recorded
        appended = commit(self, *a, **k)
        now = datetime.now(UTC)
        latencies.extend((now - e.source_time).total_seconds() for e in self.events)
        batches.append(len(self.events))
        return appended

    try:
        stores = Stores(cf_prod="", billing_prod=legacy, subs="", eventstore=eventstore)  # the one store streamed
        handoff = setup_store("billing_prod", stores)
        print(f"handoff: {handoff.appended} rows in the snapshot, streaming from {handoff.position}")
        Observations.commit = timed_commit
        counter = multiprocessing.Value("l", 0)
        procs = [multiprocessing.Process(target=writer, args=(legacy, args.rate / args.writers, args.seconds,
                                                               range(i, args.invoices, args.writers), counter))
                 for i in range(args.writers)]
        with LegacyChangeStream(store="billing_prod", stores=stores) as stream:
            started = time.perf_counter()
            for proc in procs:
                proc.start()
            while any(proc.is_alive() for proc in procs):
                stream.poll(0.05)
            stream.catch_up()
            wall = time.perf_counter() - started
        for proc in procs:
            proc.join()
        Observations.commit = commit
        with psycopg.connect(eventstore) as conn:
            in_log = conn.execute("SELECT count(*) FROM recompute_events").fetchone()[0] - handoff.appended
        written = counter.value
        quantiles = statistics.quantiles(latencies, n=100)
        print(f"writes committed: {written} in {args.seconds:.0f} s ({written / args.seconds:.0f} tx/s asked "
              f"{args.rate:.0f}); events appended: {in_log} ({'each once' if in_log == written else 'MISMATCH'})")
        print(f"commit -> event appended: p50 {quantiles[49] * 1000:.1f} ms, p95 {quantiles[94] * 1000:.1f} ms, "
              f"p99 {quantiles[98] * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
        print(f"event-store transactions: {len(batches)}, {statistics.mean(batches):.1f} events each on average; "
              f"reader wall {wall:.1f} s")
        if in_log != written:
            sys.exit(1)
    finally:
        drop_store("billing_prod", Stores(cf_prod="", billing_prod=legacy, subs="", eventstore=eventstore))


if __name__ == "__main__":
    main()
