#!/usr/bin/env python
"""How fast a client can page every event out of the Stripe stand-in, limit=100.

    .venv/bin/python scripts/bench_stripe_standin.py [--events 50000] [--template EVENT.json] [--in-process]

Prints events/s for three clients over the same keep-alive connection:
  raw      StripeClient.raw_request page by page (JSON parsed by stripe, no typed objects)
  typed    StripeClient.v1.events.list(...).auto_paging_iter() (every event becomes a stripe.Event)
  requests a bare requests.Session + orjson: the stand-in's own ceiling
By default the stand-in runs in its own process (scripts/stripe_standin.py), as it does beside the
ingester; --in-process serves from a thread of this process instead, sharing its GIL.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import requests
import stripe

from simulation.stripe_standin import StripeStandIn
from simulation.stripe_world import StripeWorld

KEY = "sk_test_bench"
NOW = 1_767_000_000
_INVOICE = {  # the invoice fields the projector reads, padded like a real invoice with one line
    "object": "invoice", "status": "open", "attempt_count": 1, "amount_due": 2000, "amount_paid": 0,
    "amount_remaining": 2000, "currency": "usd", "customer": "cus_bench", "livemode": False,
    "next_payment_attempt": NOW + 3 * 86_400, "status_transitions": {"finalized_at": NOW - 3600},
    "lines": {"object": "list", "has_more": False, "url": "/v1/invoices/in_bench/lines",
              "data": [{"id": "il_bench", "object": "line_item", "amount": 2000, "currency": "usd",
                        "description": "1 × Pro plan (at $20.00 / month)", "metadata": {},
                        "period": {"start": NOW - 30 * 86_400, "end": NOW}, "quantity": 1}]},
    "metadata": {"account_id": "acct-000001"},
}


def synthetic_events(count: int, template: dict) -> list[dict]:
    events, frozen = [], orjson.dumps(template)
    for i in range(count):
        event = orjson.loads(frozen)
        event.update(id=f"evt_bench{i:08d}", created=NOW - (count - i) // 4)  # four events a second
        event["data"]["object"]["id"] = f"in_bench{i // 5:07d}"
        events.append(event)
    return events


def page_raw(client: stripe.StripeClient) -> Iterator[dict]:
    params: dict = {"limit": 100}
    while True:
        page = client.raw_request("get", "/v1/events", **params).data
        yield from page["data"]
        if not page["has_more"]:
            return
        params["starting_after"] = page["data"][-1]["id"]


def page_typed(client: stripe.StripeClient) -> Iterator[stripe.Event]:
    return iter(client.v1.events.list(params={"limit": 100}).auto_paging_iter())


def page_requests(base_url: str) -> Iterator[dict]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {KEY}"
    params: dict = {"limit": 100}
    while True:
        response = session.get(f"{base_url}/v1/events", params=params)
        response.raise_for_status()
        page = orjson.loads(response.content)
        yield from page["data"]
        if not page["has_more"]:
            return
        params["starting_after"] = page["data"][-1]["id"]


def measure(name: str, run: Callable[[], Iterator], expected: int) -> float:
    started = time.perf_counter()
    seen = sum(1 for _ in run())
    elapsed = time.perf_counter() - started
    if seen != expected:
        raise SystemExit(f"{name}: paged {seen} events, expected {expected}")
    rate = seen / elapsed
    print(f"{name:9s} {seen} events in {elapsed:6.2f} s = {rate:9,.0f} events/s = {rate / 100:6.1f} pages/s",
          flush=True)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--template", type=Path, help="an event envelope to copy (default: a small invoice event)")
    parser.add_argument("--in-process", action="store_true")
    args = parser.parse_args()
    template = (orjson.loads(args.template.read_bytes()) if args.template else
                {"object": "event", "type": "invoice.payment_failed", "api_version": "2025-03-31.basil",
                 "livemode": False, "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
                 "data": {"object": _INVOICE, "previous_attributes": None}})
    world = StripeWorld(now=NOW, events=synthetic_events(args.events, template))
    size = sum(len(orjson.dumps(e)) for e in world.events[:100]) // 100
    print(f"{args.events} events of ~{size} bytes, server {'in-process' if args.in_process else 'subprocess'}")

    with tempfile.TemporaryDirectory() as scratch:
        if args.in_process:
            standin = StripeStandIn(world, api_key=KEY)
            base_url, stop = standin.start(), standin.stop
        else:
            world.save(Path(scratch))
            script = Path(__file__).with_name("stripe_standin.py")
            server = subprocess.Popen([sys.executable, str(script), "--world", scratch, "--api-key", KEY],
                                      stdout=subprocess.PIPE, text=True)
            base_url = server.stdout.readline().strip()
            stop = server.terminate
        try:
            client = stripe.StripeClient(KEY, base_addresses={"api": base_url}, max_network_retries=0)
            measure("requests", lambda: page_requests(base_url), args.events)
            measure("raw", lambda: page_raw(client), args.events)
            measure("typed", lambda: page_typed(client), args.events)
        finally:
            stop()
            if not args.in_process:
                server.wait(timeout=10)


if __name__ == "__main__":
    main()
