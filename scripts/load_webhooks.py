#!/usr/bin/env python
"""Load: correctly signed Stripe webhook deliveries from concurrent keep-alive clients, on loopback,
against a real `recompute serve`.

    .venv/bin/python scripts/load_webhooks.py [--clients 16] [--seconds 30] [--customers 500]
        [--duplicates 0.05] [--recording group|thread] [--http httptools|h11] [--keep]

Makes scratch databases `load_webhooks_*` on the local PostgreSQL (RECOMPUTE_TEST_PG, default
127.0.0.1:5432; dropped after unless --keep), starts `recompute serve` on a free port, delivers one
`customer.created` per customer (mapping it to an account, so the invoices are recorded, not
parked), then for --seconds each client sends `invoice.payment_failed` deliveries of new evt_ ids
(a share of --duplicates are redeliveries of one already sent) over one keep-alive connection.
Prints deliveries/s, latency to the 2xx (p50/p99/max), non-2xx and unanswered deliveries, and
checks that every evt_ id answered 2xx is in the log exactly once (exit 1 if not).
--recording/--http choose the design measured (serve's hidden options; defaults: what serve uses).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psycopg
import stripe
import uvloop
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulation.harness.databases import STORES, dsn_for, named_database  # noqa: E402
from simulation.stripe_objects import customer, event, invoice_base, invoice_state  # noqa: E402
from tests.support.serve import SECRET, serve_env, served  # noqa: E402

NOW = int(time.time())


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # seconds, 2xx only
    any_latencies: list[float] = field(default_factory=list)  # seconds, every answer
    statuses: Counter = field(default_factory=Counter)
    unanswered: int = 0
    answered_ids: set[str] = field(default_factory=set)
    sent: int = 0
    duplicates: int = 0


class Deliveries:
    """New invoice.payment_failed events for random customers, and now and then one sent before."""

    def __init__(self, customers: int, duplicate_share: float, seed: int = 7) -> None:
        self._rng = random.Random(seed)
        self._customers = customers
        self._share = duplicate_share
        self._sent: list[tuple[str, bytes]] = []
        self._next = 0

    def customer_created(self, i: int) -> tuple[str, bytes]:
        obj = customer(f"cus_load{i:06d}", account_id=f"acc_{i:06d}", created=NOW - 90 * 86_400,
                       name=f"Customer {i}", email=f"billing{i}@example.com", currency="usd",
                       payment_method=f"pm_load{i:06d}")
        return self._envelope(f"evt_cus{i:06d}", "customer.created", NOW - 90 * 86_400, obj)

    def next(self) -> tuple[str, bytes, bool]:
        if self._sent and self._rng.random() < self._share:
            return (*self._rng.choice(self._sent), True)
        n, self._next = self._next, self._next + 1
        c = self._rng.randrange(self._customers)
        created = NOW - self._rng.randrange(1, 20 * 86_400)
        base = invoice_base(f"in_load{n:08d}", customer_id=f"cus_load{c:06d}", subscription_id=f"sub_load{c:06d}",
                            number=f"LOAD-{n:08d}", created=created, currency="usd", amount_due=2900,
                            period_start=created - 30 * 86_400, period_end=created, billing_reason="subscription_cycle",
                            line_id=f"il_load{n:08d}", description="1 × Pro (at $29.00 / month)")
        obj = invoice_state(base, status="open", amount_paid=0, attempt_count=1 + n % 3, due_date=created + 5 * 86_400,
                            next_payment_attempt=created + 3 * 86_400, finalized_at=created)
        delivery = self._envelope(f"evt_load{n:08d}", "invoice.payment_failed", created + 60, obj)
        self._sent.append(delivery)
        return (*delivery, False)

    @staticmethod
    def _envelope(evt_id: str, etype: str, created: int, obj: dict) -> tuple[str, bytes]:
        return evt_id, orjson.dumps(event(evt_id, etype, created, obj))


SIGNING = {"secret": SECRET}


async def _post(reader, writer, body: bytes) -> int:
    signature = stripe.WebhookSignature.generate_signature_header(body.decode(), SIGNING["secret"])
    writer.write(b"POST /webhooks/stripe HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Stripe-Signature: " + signature.encode() + b"\r\nContent-Length: " + str(len(body)).encode()
                 + b"\r\n\r\n" + body)
    status = int((await reader.readline()).split(b" ", 2)[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def client(port: int, take, tally: Tally, deadline: float) -> None:
    connection = None
    while time.monotonic() < deadline and (item := take()) is not None:
        evt_id, body, duplicate = item
        tally.sent += 1
        tally.duplicates += duplicate
        started = time.perf_counter()
        try:
            connection = connection or await asyncio.open_connection("127.0.0.1", port)
            status = await asyncio.wait_for(_post(*connection, body), 15)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            tally.unanswered += 1
            connection = None
            continue
        tally.statuses[status] += 1
        tally.any_latencies.append(time.perf_counter() - started)
        if 200 <= status < 300:
            tally.latencies.append(time.perf_counter() - started)
            tally.answered_ids.add(evt_id)


async def load(port: int, deliveries: Deliveries, customers: int, clients: int, seconds: float,
               http_only: bool) -> tuple[Tally, Tally, float]:
    warmup, timed = Tally(), Tally()
    pending = iter(range(customers))

    def next_customer():
        i = next(pending, None)
        return None if i is None else (*deliveries.customer_created(i), False)

    await asyncio.gather(*(client(port, next_customer, warmup, time.monotonic() + 120) for _ in range(clients)))
    if http_only:
        SIGNING["secret"] = "whsec_not_the_servers"
    started = time.monotonic()
    await asyncio.gather(*(client(port, deliveries.next, timed, started + seconds) for _ in range(clients)))
    return warmup, timed, time.monotonic() - started


def check_log(eventstore: str, answered: set[str]) -> tuple[int, list[str], list[str], int]:
    """How many distinct evt_ ids the log holds; answered ids missing; ids recorded more than once; parked."""
    with psycopg.connect(eventstore) as conn:
        counts = dict(conn.execute("SELECT convert_from(state, 'UTF8')::jsonb ->> 'event_id', count(*) "
                                   "FROM recompute_events GROUP BY 1").fetchall())
        parked = conn.execute("SELECT count(*) FROM parked_record").fetchone()[0]
    return (len(counts), sorted(answered - counts.keys()), sorted(i for i, n in counts.items() if n > 1), parked)


def percentile(sorted_values: list[float], share: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(share * len(sorted_values)))] if sorted_values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--duplicates", type=float, default=0.05, help="share of redeliveries")
    parser.add_argument("--recording", choices=("group", "group2", "thread"), default="group")
    parser.add_argument("--http", choices=("httptools", "h11"), default="httptools")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--http-only", action="store_true",
                        help="sign the timed deliveries with a wrong secret: 400s, nothing recorded (the HTTP "
                             "stack and the signature check alone)")
    args = parser.parse_args()

    stores = {store: named_database(f"load_webhooks_{store}")[0] for store in STORES}
    try:
        with served(serve_env(stores), "--recording", args.recording, "--http", args.http, stderr=None) as running:
            load_before = os.getloadavg()[0]
            warmup, timed, took = uvloop.run(load(running.port, Deliveries(args.customers, args.duplicates),
                                                  args.customers, args.clients, args.seconds, args.http_only))
            load_after = os.getloadavg()[0]
        distinct, missing, twice, parked = check_log(stores["eventstore"], warmup.answered_ids | timed.answered_ids)
    finally:
        if not args.keep:
            with psycopg.connect(dsn_for("postgres"), autocommit=True) as admin:
                for store in STORES:
                    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(f"load_webhooks_{store}")))

    if args.http_only:
        answers = sorted(timed.any_latencies)
        print(f"--http-only ({args.http}): {len(answers)} answered {dict(timed.statuses)} in {took:.1f} s -> "
              f"{len(answers) / took:,.0f} answers/s; p50 {percentile(answers, 0.5) * 1000:.1f} ms, "
              f"p99 {percentile(answers, 0.99) * 1000:.1f} ms; load average {os.getloadavg()[0]:.1f}")
        return 0
    latencies = sorted(timed.latencies)
    ok = sum(n for status, n in timed.statuses.items() if 200 <= status < 300)
    print(f"recompute serve --recording {args.recording} --http {args.http}; {args.clients} keep-alive clients, "
          f"{args.seconds:g} s, {args.customers} customers; load average {load_before:.1f} -> {load_after:.1f} "
          f"on {os.cpu_count()} cores (client, server and PostgreSQL share them)")
    print(f"warm-up: {len(warmup.answered_ids)} customer.created answered 2xx, {warmup.unanswered} unanswered")
    print(f"deliveries: {timed.sent} sent ({timed.duplicates} redeliveries), {ok} answered 2xx in {took:.1f} s "
          f"-> {ok / took:,.0f} deliveries/s")
    print(f"latency to the 2xx: p50 {percentile(latencies, 0.50) * 1000:.1f} ms, "
          f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, max {latencies[-1] * 1000 if latencies else 0:.1f} ms")
    print(f"non-2xx: {sum(timed.statuses.values()) - ok} {dict(timed.statuses)}; unanswered: {timed.unanswered}")
    print(f"log: {distinct} distinct evt_ ids; answered but missing: {len(missing)}; recorded more than once: "
          f"{len(twice)}; parked: {parked}")
    return 1 if missing or twice or timed.unanswered or ok < timed.sent else 0


if __name__ == "__main__":
    sys.exit(main())
