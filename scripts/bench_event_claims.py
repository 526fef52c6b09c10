"""Benchmark: how an evt_ id is claimed when deliveries race — a unique key vs an advisory lock per id.

    .venv/bin/python scripts/bench_event_claims.py [--deliverers 8] [--deliveries 400] [--shared 0.25]

N deliverer processes, each on its own connection, record single-event webhook deliveries through
the real `StripeIngester.record_deliveries` (one transaction each: claim, route, append). A share
of the deliveries carry ids that every deliverer delivers at about the same time (Stripe retrying
while we answer). Two ways to claim an id, everything else the same:

    unique key      INSERT INTO stripe_event_seen ... ON CONFLICT DO NOTHING RETURNING event_id
                    (eventlog.own_tables.claim_stripe_ids: a racer waits on the key, then claims nothing)
    advisory lock   pg_advisory_xact_lock(hashtext(id)), then SELECT the id, INSERT it if absent

Prints, per way, deliveries/s over the wall time, p50/p99 latency of one delivery, and checks that
every id is in the log exactly once. Runs on the local PostgreSQL (RECOMPUTE_TEST_PG) in a scratch
database `bench_event_claims`, emptied before each way.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ingestion.stripe.ingester as stripe_ingest  # noqa: E402
from eventlog.own_tables import claim_stripe_ids, customer_accounts, ensure_own_schema, seen_digests  # noqa: E402
from eventlog.stores import Stores  # noqa: E402
from ingestion.stripe.ingester import StripeIngester  # noqa: E402
from simulation.harness.databases import named_database  # noqa: E402
from tests.support.stripe_world import NOW, an_event, an_invoice  # noqa: E402

ACCOUNTS = 1_000


def claim_with_advisory_locks(cur: psycopg.Cursor, claims, *, changed_too: bool = False) -> set[str]:
    """The alternative: one advisory lock per id (in lock-key order), then look and insert."""
    if not claims:
        return set()
    cur.execute("SELECT pg_advisory_xact_lock(7310003, k) FROM "
                "(SELECT DISTINCT hashtext(i) AS k FROM unnest(%s::text[]) i ORDER BY 1) keys",
                ([c[0] for c in claims],))
    cur.execute("SELECT event_id FROM stripe_event_seen WHERE event_id = ANY(%s)", ([c[0] for c in claims],))
    seen = {event_id for (event_id,) in cur}
    fresh = [c for c in claims if c[0] not in seen]
    if fresh:
        cur.executemany("INSERT INTO stripe_event_seen (event_id, digest, created) VALUES (%s, %s, %s)", fresh)
    return {c[0] for c in fresh}


WAYS = {"unique key": claim_stripe_ids, "advisory lock": claim_with_advisory_locks}


def claiming_with(claim):
    """The ingester's `claim_and_look_up` with `claim` as the way to claim, and the look-ups after it."""
    def claim_and_look_up(conn, claims, customer_ids, *, changed_too=False):
        with conn.cursor() as cur:
            claimed = claim(cur, claims, changed_too=changed_too)
            return (claimed, seen_digests(cur, [c[0] for c in claims]),
                    customer_accounts(cur, customer_ids) if customer_ids else {})
    return claim_and_look_up


def deliveries_of(deliverer: int, count: int, shared: float) -> list[dict]:
    """This deliverer's envelopes: its own ids, and every 1/shared-th delivery one id all deliverers send."""
    every = max(1, round(1 / shared)) if shared > 0 else 0
    envelopes = []
    for i in range(count):
        if every and i % every == 0:
            event_id, account = f"evt_shared_{i}", i % ACCOUNTS
        else:
            event_id, account = f"evt_{deliverer}_{i}", (deliverer * count + i) % ACCOUNTS
        invoice = an_invoice(f"in_{event_id}", f"cus_{account}", attempt_count=1)
        envelopes.append(an_event(event_id, "invoice.payment_failed", invoice, NOW - 600 + i))
    return envelopes


def deliverer(way: str, dsn: str, envelopes: list[dict], start, results) -> None:
    stripe_ingest.claim_and_look_up = claiming_with(WAYS[way])
    ingester = StripeIngester(reader=None, stores=Stores(cf_prod="", billing_prod="", subs="", eventstore=dsn))
    latencies = []
    with psycopg.connect(dsn) as log:
        start.wait()
        for envelope in envelopes:
            began = time.perf_counter()
            ingester.record_deliveries([envelope], log=log)
            latencies.append(time.perf_counter() - began)
    results.put(latencies)


def prepare(dsn: str) -> None:
    ensure_own_schema(dsn)
    with psycopg.connect(dsn) as conn:
        conn.execute("TRUNCATE recompute_events, stripe_event_seen, stripe_customer_account, parked_record")
        conn.execute("INSERT INTO stripe_customer_account SELECT 'cus_' || i, 'acc_' || lpad(i::text, 6, '0') "
                     "FROM generate_series(0, %s) i", (ACCOUNTS - 1,))


def measure(way: str, dsn: str, args) -> None:
    prepare(dsn)
    plans = [deliveries_of(d, args.deliveries, args.shared) for d in range(args.deliverers)]
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(args.deliverers + 1), context.Queue()
    processes = [context.Process(target=deliverer, args=(way, dsn, plan, start, results)) for plan in plans]
    for process in processes:
        process.start()
    start.wait()
    began = time.perf_counter()
    latencies = [latency for _ in processes for latency in results.get()]
    seconds = time.perf_counter() - began
    for process in processes:
        process.join()
    with psycopg.connect(dsn) as conn:
        copies = dict(conn.execute(
            "SELECT convert_from(state, 'UTF8')::jsonb ->> 'event_id', count(*) FROM recompute_events GROUP BY 1"))
    expected = {envelope["id"] for plan in plans for envelope in plan}
    twice = sum(1 for n in copies.values() if n > 1)
    missing = len(expected - copies.keys())
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    p50 = statistics.median(latencies)
    print(f"{way:<14} {len(latencies) / seconds:>8,.0f} deliveries/s   p50 {p50 * 1000:5.1f} ms"
          f"   p99 {p99 * 1000:5.1f} ms   ids {len(expected):,}: {twice} recorded twice, {missing} missing")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliverers", type=int, default=8)
    parser.add_argument("--deliveries", type=int, default=400, help="per deliverer")
    parser.add_argument("--shared", type=float, default=0.25, help="share of deliveries whose id all deliverers send")
    parser.add_argument("--rounds", type=int, default=2, help="each way is measured this many times, alternating")
    args = parser.parse_args()
    dsn, _ = named_database("bench_event_claims")
    print(f"{args.deliverers} deliverers x {args.deliveries} single-event deliveries, {args.shared:.0%} of them "
          "with ids every deliverer sends")
    for _ in range(args.rounds):
        for way in WAYS:
            measure(way, dsn, args)


if __name__ == "__main__":
    main()
