"""A `recompute ingest` killed with SIGKILL at random points and restarted ends with the log of an
uninterrupted run: nothing lost, nothing twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from simulation.harness.databases import scratch_databases
from simulation.stripe_standin import StripeStandIn
from tests.support.legacy import create_stores, execute
from tests.support.stripe_world import API_KEY, NOW, a_customer, a_world, an_event, an_invoice

pytestmark = pytest.mark.integration
RECOMPUTE = [sys.executable, "-c", "from recompute.cli import main; main()"]


def a_busy_fleet(dsns) -> None:
    """4,000 accounts with 5 invoices and 5 charges each: enough rows for a kill to land mid-run."""
    create_stores(dsns)
    execute(dsns["cf_prod"], "INSERT INTO accounts SELECT 'acc_' || lpad(i::text, 6, '0'), 'n', 'pro', 'active', "
            "'2026-01-01Z', '2026-01-01Z' FROM generate_series(1, 4000) i")
    execute(dsns["billing_prod"], "INSERT INTO invoices SELECT 'inv_' || i || '_' || j, "
            "'acc_' || lpad(i::text, 6, '0'), NULL, 'paid', 'usd', 2900, 2900, '2026-01-05Z', '2026-01-01Z', "
            "'2026-01-06Z' FROM generate_series(1, 4000) i, generate_series(1, 5) j")
    execute(dsns["billing_prod"], "INSERT INTO charges SELECT 'ch_' || i || '_' || j, "
            "'acc_' || lpad(i::text, 6, '0'), 'inv_' || i || '_' || j, NULL, 2900, 'succeeded', NULL, "
            "'2026-01-05Z' FROM generate_series(1, 4000) i, generate_series(1, 5) j")


def events_in(eventstore: str) -> int:
    with psycopg.connect(eventstore) as conn:
        found = conn.execute("SELECT to_regclass('recompute_events') IS NOT NULL").fetchone()[0]
        return conn.execute("SELECT count(*) FROM recompute_events").fetchone()[0] if found else 0


def run_ingest(env, *, kill_at_events: int | None = None, kill_when: Callable[[], bool] | None = None,
               source: str = "all") -> bool:
    """Runs `recompute ingest`; with kill_at_events, SIGKILLs it once the log holds that many events
    (with kill_when, once that says so).

    Returns True when the run was killed, False when it finished first."""
    process = subprocess.Popen([*RECOMPUTE, "ingest", "--source", source, "--batch-size", "700"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_at_events is not None:
        kill_when = lambda: events_in(env["RECOMPUTE_EVENTSTORE_DSN"]) >= kill_at_events  # noqa: E731
    if kill_when is not None:
        while process.poll() is None:
            if kill_when():
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                return True
            time.sleep(0.01)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()
    return False


def the_log(eventstore: str) -> list[tuple]:
    """Everything that matters in the log: per stream and per source table, in order, each event's
    content without run-specific stamps. (Tables and Stripe are ingested side by side, so how two
    of them interleave within one stream differs between any two runs; that never decides state:
    source time does.)"""
    with psycopg.connect(eventstore) as conn:
        gaps = conn.execute(
            "SELECT originator_id FROM recompute_events GROUP BY 1 "
            "HAVING max(originator_version) <> count(*) OR min(originator_version) <> 1").fetchall()
        assert gaps == [], f"streams with gaps or duplicate versions: {gaps}"
        rows = conn.execute(
            "SELECT originator_id, convert_from(state, 'UTF8')::jsonb ->> 'store' AS store, "
            "  convert_from(state, 'UTF8')::jsonb ->> 'table' AS tbl, topic, "
            "  (convert_from(state, 'UTF8')::jsonb - 'position' - 'recorded_at')::text "
            "FROM recompute_events ORDER BY originator_id, store, tbl, originator_version").fetchall()
    return rows


def environment(dsns, stripe_url) -> dict[str, str]:
    return {**os.environ, "RECOMPUTE_CF_PROD_DSN": dsns["cf_prod"], "RECOMPUTE_BILLING_PROD_DSN": dsns["billing_prod"],
            "RECOMPUTE_SUBS_DSN": dsns["subs"], "RECOMPUTE_EVENTSTORE_DSN": dsns["eventstore"],
            "STRIPE_API_KEY": API_KEY, "RECOMPUTE_STRIPE_API_BASE": stripe_url,
            "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


def test_ingest_killed_at_random_points_ends_with_the_log_of_an_uninterrupted_run(stores):
    a_busy_fleet(stores)
    rng = random.Random(20261124)
    with StripeStandIn(a_world(), api_key=API_KEY) as stripe, scratch_databases("eventstore") as reference:
        env = environment(stores, stripe.base_url)
        kill_points = sorted(rng.sample(range(1, 44_000), 4))
        kills = sum(run_ingest(env, kill_at_events=point) for point in kill_points)
        run_ingest(env)  # finishes the job
        finished = events_in(stores["eventstore"])
        run_ingest(env)  # and a rerun adds nothing
        assert events_in(stores["eventstore"]) == finished
        run_ingest({**env, "RECOMPUTE_EVENTSTORE_DSN": reference["eventstore"]})
        interrupted, uninterrupted = the_log(stores["eventstore"]), the_log(reference["eventstore"])
    assert kills >= 3, "the kills must land mid-run for this test to mean anything"
    assert len(uninterrupted) == 4000 + 20000 + 20000 + 6
    assert interrupted == uninterrupted


def a_large_stripe_world():
    """3,000 customers with an invoice each: the list phase alone appends 6,000 events."""
    from simulation.stripe_world import StripeWorld

    world = StripeWorld(now=NOW)
    for i in range(1, 3001):
        customer = a_customer(f"cus_{i}", f"acc_{i:06d}")
        invoice = an_invoice(f"in_{i}", f"cus_{i}")
        world.customers.append(customer)
        world.invoices.append(invoice)
        world.events.append(an_event(f"evt_{i}", "invoice.finalized", invoice, NOW - 3600 + i))
    return world


def test_a_stripe_catch_up_killed_while_listing_ends_with_the_log_of_an_uninterrupted_run(stores):
    rng = random.Random(7)
    create_stores(stores)
    with StripeStandIn(a_large_stripe_world(), api_key=API_KEY) as stripe, \
            scratch_databases("eventstore") as reference:
        env = environment(stores, stripe.base_url)
        kills = sum(run_ingest(env, kill_at_events=point, source="stripe")
                    for point in sorted(rng.sample(range(1, 6_000), 3)))
        run_ingest(env, source="stripe")
        run_ingest({**env, "RECOMPUTE_EVENTSTORE_DSN": reference["eventstore"]}, source="stripe")
        interrupted, uninterrupted = the_log(stores["eventstore"]), the_log(reference["eventstore"])
    assert kills >= 2, "the kills must land mid-run for this test to mean anything"
    assert len(uninterrupted) == 9_000
    assert interrupted == uninterrupted


def test_a_stripe_run_killed_while_it_looks_a_customer_up_loses_no_event(stores):
    create_stores(stores)
    with StripeStandIn(a_world(), api_key=API_KEY) as stripe:
        env = environment(stores, stripe.base_url)
        run_ingest(env, source="stripe")
        stripe.put_object("customer", a_customer("cus_77", "acc_000077", created=NOW - 30))
        stripe.add_event(an_event("evt_77", "invoice.finalized", an_invoice("in_77", "cus_77"), NOW - 10))
        released = threading.Event()
        stripe.leave_unanswered("/v1/customers/", until=released)  # the lookup hangs: kill -9 lands in it
        try:
            killed = run_ingest(env, source="stripe", kill_when=lambda: stripe.unanswered_requests > 0)
        finally:
            stripe.leave_unanswered(None)
            released.set()
        assert killed, "the kill must land in the lookup for this test to mean anything"
        run_ingest(env, source="stripe")
    with psycopg.connect(stores["eventstore"]) as conn:
        recorded = conn.execute("SELECT convert_from(state, 'UTF8')::jsonb ->> 'event_id' FROM recompute_events "
                                "WHERE originator_id = 'acc_000077'").fetchall()
    assert recorded == [("evt_77",)]
