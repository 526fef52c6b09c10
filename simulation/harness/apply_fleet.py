"""A small drifting fleet, ingested, ready for `apply`; snapshots of the legacy tables; a queue on the exchange."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psycopg
from kombu import Connection, Queue

from projections.apply.relay import EXCHANGE
from simulation.fleet import FleetManifest, build_fleet
from simulation.harness.secrets import leaked
from simulation.legacy_schema import LEGACY_COLUMNS
from simulation.stripe_standin import StripeStandIn

NOW = datetime(2026, 3, 1, tzinfo=UTC)
RECOMPUTE = [sys.executable, "-c", "from recompute.cli import main; main()"]
API_KEY = "sk_test_recompute"
BROKER_URL = os.environ.get("RECOMPUTE_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
KEYS = {"accounts": ("account_id",), "product_config": ("plan", "feature"), "entitlements": ("account_id", "feature"),
        "invoices": ("invoice_id",), "charges": ("charge_id",), "dunning": ("account_id",),
        "schedules": ("invoice_id", "attempt"), "subs_account": ("account_id",), "subs_customer": ("id",),
        "subs_dunning": ("account_id",), "subs_subscription": ("account_id",), "subs_invoice": ("stripe_invoice_id",)}


@dataclass
class Fleet:
    dsns: dict[str, str]
    stripe_dir: Path
    manifest: FleetManifest

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "RECOMPUTE_CF_PROD_DSN": self.dsns["cf_prod"],
                "RECOMPUTE_BILLING_PROD_DSN": self.dsns["billing_prod"], "RECOMPUTE_SUBS_DSN": self.dsns["subs"],
                "RECOMPUTE_EVENTSTORE_DSN": self.dsns["eventstore"], "RECOMPUTE_BROKER_URL": BROKER_URL,
                "PYTHONPATH": str(Path(__file__).resolve().parents[2]), **extra}

    def ingest(self) -> None:
        """`recompute ingest` (every source), with Stripe served by the stand-in."""
        with StripeStandIn(self.stripe_dir, api_key=API_KEY) as stripe:
            self.recompute("ingest", STRIPE_API_KEY=API_KEY, RECOMPUTE_STRIPE_API_BASE=stripe.base_url)

    def recompute(self, *args: str, expect: int = 0, **env: str) -> subprocess.CompletedProcess:
        """Runs the `recompute` command line; checks its exit code."""
        done = subprocess.run([*RECOMPUTE, *args], env=self.env(**env), capture_output=True, text=True, timeout=300)
        assert not (shown := leaked(done.stdout + done.stderr, self.env(**env))), f"printed the secret of {shown}"
        assert done.returncode == expect, f"recompute {' '.join(args)}: exit {done.returncode}\n{done.stdout}{done.stderr}"
        return done


def a_drifting_fleet(dsns: dict[str, str], stripe_dir: Path, *, accounts: int = 300, drifting: int = 40) -> Fleet:
    manifest = build_fleet(dsns, accounts=accounts, seed=7, drifting=drifting, now=NOW, stripe_dir=stripe_dir)
    fleet = Fleet(dsns, stripe_dir, manifest)
    fleet.ingest()
    return fleet


def snapshot(dsns: dict[str, str]) -> dict[str, dict[tuple, str]]:
    """Every row of every legacy table as PostgreSQL's row_to_json text, by "store.table" and key."""
    found: dict[str, dict[tuple, str]] = {}
    for store, tables in LEGACY_COLUMNS.items():
        with psycopg.connect(dsns[store], options="-c TimeZone=UTC") as conn:
            for table in tables:
                rows = found.setdefault(f"{store}.{table}", {})
                for (text,) in conn.execute(f"SELECT row_to_json(t)::text FROM {table} t"):
                    row = orjson.loads(text)
                    rows[tuple(row[k] for k in KEYS[table])] = text
    return found


@contextmanager
def a_consumer() -> Iterator[Queue]:
    """A durable queue bound to the exchange with '#' (it outlives a broker restart), deleted afterwards;
    `drain(queue)` reads it. No connection is held in between."""
    queue = Queue(f"test-apply-{uuid.uuid4().hex[:8]}", exchange=EXCHANGE, routing_key="#", durable=True)
    with Connection(BROKER_URL, connect_timeout=5) as conn:
        queue(conn.default_channel).declare()
    try:
        yield queue
    finally:
        with Connection(BROKER_URL, connect_timeout=5) as conn:
            queue(conn.default_channel).delete()


def drain(queue: Queue) -> list[dict]:
    """Every message in the queue: {'id', 'type', 'routing_key', 'body', 'delivery_mode'}."""
    messages = []
    with Connection(BROKER_URL, connect_timeout=5) as conn:
        bound = queue(conn.default_channel)
        while (message := bound.get(no_ack=True)) is not None:
            messages.append({"id": message.properties.get("message_id"), "type": message.properties.get("type"),
                             "routing_key": message.delivery_info["routing_key"], "body": orjson.loads(message.body),
                             "delivery_mode": message.properties.get("delivery_mode")})
    return messages
