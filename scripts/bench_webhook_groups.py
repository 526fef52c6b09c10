#!/usr/bin/env python
"""Benchmark: the time `serve`'s writer takes to record one group of webhook deliveries.

    .venv/bin/python scripts/bench_webhook_groups.py [--groups 300] [--size 16] [--check]

Records groups of `invoice.payment_failed` deliveries (new evt_ ids, 5% redeliveries, as
scripts/load_webhooks.py sends them) through what `serve` records them with: `pooled_recorder` over
a psycopg_pool pool and `StripeIngester.record_deliveries`, one group at a time, and prints the
p50/p90/mean time per group. No HTTP: the round trips of a group alone. --check: the pool checks a
connection each time it is taken (as serve's pool did before). Runs on the local PostgreSQL
(RECOMPUTE_TEST_PG) in a scratch database `bench_webhook_groups`, kept between runs (its 500
customers mapped once); to compare two versions, run each tree's copy of this script in turn.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import orjson
import psycopg_pool

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from load_webhooks import Deliveries  # noqa: E402

from eventlog.own_tables import ensure_own_schema  # noqa: E402
from eventlog.stores import STORE_NAMES, Stores  # noqa: E402
from ingestion.stripe.ingester import StripeIngester  # noqa: E402
from ingestion.stripe.webhooks import pooled_recorder  # noqa: E402
from simulation.harness.databases import named_database  # noqa: E402

CUSTOMERS = 500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=300)
    parser.add_argument("--size", type=int, default=16, help="deliveries per group (load_webhooks' clients)")
    parser.add_argument("--check", action="store_true", help="the pool checks each connection it hands out")
    args = parser.parse_args()
    eventstore, kept = named_database("bench_webhook_groups", keep=True)
    stores = Stores.from_dsns(dict.fromkeys(STORE_NAMES, eventstore))
    deliveries = Deliveries(CUSTOMERS, 0.05, seed=time.time_ns())
    deliveries._next = time.time_ns() // 1_000_000 % 90_000_000  # evt_ ids not sent by an earlier run
    ingester = StripeIngester(reader=None, stores=stores)
    check = {"check": psycopg_pool.ConnectionPool.check_connection} if args.check else {}
    with psycopg_pool.ConnectionPool(eventstore, min_size=2, max_size=4, **check) as pool:
        record = pooled_recorder(pool, lambda envelopes, log: ingester.record_deliveries(envelopes, log=log))
        if not kept:
            ensure_own_schema(eventstore)
            record([orjson.loads(deliveries.customer_created(i)[1]) for i in range(CUSTOMERS)])
        times = []
        for _ in range(args.groups):
            group = [orjson.loads(deliveries.next()[1]) for _ in range(args.size)]
            started = time.perf_counter()
            record(group)
            times.append(time.perf_counter() - started)
    times.sort()
    print(f"{ROOT.parent}: {args.groups} groups of {args.size}{' (pool check)' if args.check else ''}: "
          f"p50 {times[len(times) // 2] * 1000:.2f} ms, p90 {times[int(len(times) * 0.9)] * 1000:.2f} ms, "
          f"mean {statistics.mean(times) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
