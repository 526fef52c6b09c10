"""`recompute project` as a process: one pass, and --follow until SIGTERM (with the webhook
receiver in the same process); the timer of an invoice crossing 3 days overdue; a kill -9 and a
restart; two followers, one killed."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest
import requests

from domain.partitions import partition_of
from projections.follow import leases
from tests.support.follow import (
    RECOMPUTE,
    a_calm_world,
    an_overdue_invoice,
    applied,
    dunning_stage,
    env_of,
    eventually,
    following,
    project,
    stop,
)
from tests.support.serve import SECRET, signed
from tests.support.stripe_world import a_customer, an_event
from tests.support.stripe_world import an_invoice as a_stripe_invoice

pytestmark = pytest.mark.integration


@pytest.fixture
def world(stores):
    return stores, a_calm_world(stores, accounts=10)


def test_one_pass_corrects_a_legacy_change_and_a_second_pass_writes_nothing_for_its_own_rows(world):
    dsns, accounts = world
    first = project(dsns)
    assert "made now: the first pass evaluates every account" in first.stdout
    assert "10 accounts evaluated (0 timers due), 0 corrections applied" in first.stdout
    an_overdue_invoice(dsns, accounts[2], days=5)
    second = project(dsns)
    assert "1 accounts evaluated (0 timers due), 3 corrections applied" in second.stdout
    assert dunning_stage(dsns, accounts[2]) == "retrying"
    third = project(dsns)
    assert re.search(r"ingest subs: read \d+, appended 2", third.stdout)  # our writes, back through ingest
    assert "1 accounts evaluated (0 timers due), 0 corrections applied" in third.stdout
    assert len(applied(dsns)) == 3


def test_project_refuses_rules_other_than_the_active_ones_and_a_port_without_follow(world, tmp_path):
    dsns, _ = world
    project(dsns)
    other = tmp_path / "v2.toml"
    other.write_text('version = "v2"\nbad_debt_days_overdue = 30\n\n[[dunning.stage]]\nname = "grace"\n')
    refused = project(dsns, "--rules", str(other), expect=2)
    assert "are not the active rules v1" in refused.stderr and "backfill" in refused.stderr
    assert "needs --follow" in project(dsns, "--port", "0", expect=2).stderr


def test_follow_corrects_changes_and_timers_as_they_come_and_sigterm_exits_0_after_the_batch(world):
    dsns, accounts = world
    with following(dsns, "--max-share", "1") as process:
        an_overdue_invoice(dsns, accounts[0], days=5)
        eventually(lambda: dunning_stage(dsns, accounts[0]) == "retrying", what="the change corrected")
        crossing = datetime.now(UTC) + timedelta(seconds=4)
        an_overdue_invoice(dsns, accounts[1], days=3, seconds=-4)  # 3 days overdue in 4 s
        eventually(lambda: dunning_stage(dsns, accounts[1]) == "grace", what="grace first")
        eventually(lambda: dunning_stage(dsns, accounts[1]) == "retrying", what="retrying when the timer came")
        with psycopg.connect(dsns["eventstore"]) as conn:
            as_of = conn.execute("SELECT min(as_of) FROM correction_audit WHERE account_id = %s "
                                 "AND tbl = 'billing_prod.dunning' AND to_value = '\"retrying\"'",
                                 (accounts[1],)).fetchone()[0]
        assert as_of >= crossing - timedelta(seconds=1)
        code, out = stop(process)
    assert code == 0 and "stopped: the batch in hand was finished" in out
    assert len({a for a, *_ in applied(dsns)}) == 2


def test_a_webhook_delivered_to_project_reaches_the_legacy_stores(world):
    dsns, accounts = world
    now = int(time.time()) - 5
    account = accounts[4]
    with following(dsns, "--port", "0", "--max-share", "1", STRIPE_WEBHOOK_SECRET=SECRET) as process:
        line = eventually(lambda: process.stdout.readline(), what="serving line")
        url = re.search(r"serving on (http://\S+)", line).group(1)
        customer = a_customer("cus_w1", account, created=now - 100)
        invoice = a_stripe_invoice("in_w1", "cus_w1", status="open", attempt_count=1, created=now - 50)
        for event in (an_event("evt_w1", "customer.created", customer, now - 100),
                      an_event("evt_w2", "invoice.payment_failed", invoice, now)):
            body = orjson.dumps(event)
            answer = requests.post(f"{url}/webhooks/stripe", data=body, timeout=10,
                                   headers={"Stripe-Signature": signed(body), "Content-Type": "application/json"})
            assert answer.status_code == 200, answer.text

        def subs_invoice():
            with psycopg.connect(dsns["subs"]) as conn:
                return conn.execute("SELECT status, attempt_count FROM subs_invoice WHERE stripe_invoice_id = 'in_w1'"
                                    ).fetchone()

        assert eventually(subs_invoice, what="the webhook's invoice in subs_invoice") == ("open", 1)
        metrics = requests.get(f"{url}/metrics", timeout=10).text
        assert "recompute_correction_lag_seconds_count" in metrics and "recompute_follow_writing_paused 0.0" in metrics
        code, _ = stop(process)
    assert code == 0


def test_kill_9_then_a_restart_loses_nothing_and_applies_nothing_twice(world):
    dsns, accounts = world
    for trial, delay in enumerate((0.3, 0.8, 1.5)):
        with following(dsns, "--max-share", "1") as process:
            for account in accounts[trial * 3:trial * 3 + 3]:
                an_overdue_invoice(dsns, account, days=5 + 20 * (trial % 2))
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)
            process.wait()
    project(dsns, "--max-share", "1")
    done = applied(dsns)
    assert not [c for c, n in Counter(done).items() if n > 1]
    assert {a for a, *_ in done} == set(accounts[:9])
    with psycopg.connect(dsns["eventstore"]) as conn:
        assert conn.execute("SELECT count(*) FROM correction_audit WHERE status = 'pending'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM outbox_event WHERE status = 'held'").fetchone()[0] == 0
    plan = orjson.loads(subprocess.run([*RECOMPUTE, "plan", "--json"], env=env_of(dsns), capture_output=True,
                                       text=True, timeout=120, check=True).stdout)
    assert plan["accounts_disagreeing"] == 0


def test_two_followers_share_the_partitions_and_a_killed_ones_accounts_are_still_corrected(world):
    dsns, accounts = world
    project(dsns)  # the generation and every state, first
    with following(dsns, "--max-share", "1") as one, following(dsns, "--max-share", "1") as two:

        def split() -> dict[str, int] | None:
            with psycopg.connect(dsns["eventstore"]) as conn:
                held = dict(conn.execute("SELECT owner, count(*) FROM follow_lease WHERE owner IS NOT NULL "
                                         "AND expires_at > now() GROUP BY owner").fetchall())
            return held if sorted(held.values()) == [16, 16] else None

        eventually(split, what="16 partitions each")
        one.send_signal(signal.SIGKILL)
        one.wait()
        for account in accounts:
            an_overdue_invoice(dsns, account, days=5)
        eventually(lambda: all(dunning_stage(dsns, a) == "retrying" for a in accounts), what="every account")
        code, _ = stop(two)
    assert code == 0
    done = applied(dsns)
    assert not [c for c, n in Counter(done).items() if n > 1] and len(done) == 3 * len(accounts)


def test_a_one_pass_right_after_a_kill_9_also_corrects_the_accounts_of_the_killed_followers_partitions(world):
    """The killed follower's lease and membership still stand when the one pass starts: the one
    pass must not take it for a live follower that will do its half (it never renews)."""
    dsns, accounts = world
    project(dsns)  # the generation and every state, first
    with following(dsns, "--lease", "8") as one, following(dsns, "--lease", "8") as two:
        by_pid = {one.pid: one, two.pid: two}

        def split() -> dict[str, list[int]] | None:
            with psycopg.connect(dsns["eventstore"]) as conn:
                held = leases.owners(conn)
            return held if sorted(map(len, held.values())) == [16, 16] else None

        held = eventually(split, what="16 partitions each")
        partition = partition_of(accounts[5], 32)
        [killed] = [by_pid[int(owner.split(":")[1])] for owner, parts in held.items() if partition in parts]
        [stopped] = [p for p in (one, two) if p is not killed]
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        code, _ = stop(stopped)  # a clean exit: its half is free at once
    assert code == 0
    for account in accounts:
        an_overdue_invoice(dsns, account, days=5)
    project(dsns, "--max-share", "1")
    assert {a for a, *_ in applied(dsns)} == set(accounts)


def test_follow_polls_stripes_events_api_every_interval_when_a_key_is_set(world):
    from simulation.stripe_standin import StripeStandIn
    from simulation.stripe_world import StripeWorld

    dsns, accounts = world
    now = int(time.time()) - 5
    customer = a_customer("cus_p1", accounts[6], created=now - 100)
    invoice = a_stripe_invoice("in_p1", "cus_p1", status="open", attempt_count=1, created=now - 50)
    stripe_world = StripeWorld(now=now, customers=[customer], subscriptions=[], invoices=[invoice],
                               events=[an_event("evt_p1", "customer.created", customer, now - 100),
                                       an_event("evt_p2", "invoice.payment_failed", invoice, now - 50)])
    with StripeStandIn(stripe_world, api_key="sk_test_follow") as stripe, \
            following(dsns, "--stripe-interval", "0.5", "--max-share", "1", STRIPE_API_KEY="sk_test_follow",
                      RECOMPUTE_STRIPE_API_BASE=stripe.base_url) as process:

        def attempts():
            with psycopg.connect(dsns["subs"]) as conn:
                row = conn.execute("SELECT attempt_count FROM subs_invoice WHERE stripe_invoice_id = 'in_p1'").fetchone()
            return row and row[0]

        assert eventually(attempts, what="the listed invoice in subs_invoice") == 1
        stripe.add_event(an_event("evt_p3", "invoice.payment_failed",
                                  {**invoice, "attempt_count": 2}, int(time.time()) - 1))
        eventually(lambda: attempts() == 2, what="the next event, polled")
        code, _ = stop(process)
    assert code == 0


@pytest.mark.logical
def test_with_change_streams_project_reads_the_legacy_stores_through_them(world):
    dsns, accounts = world
    setup = subprocess.run([*RECOMPUTE, "cdc", "setup"], env=env_of(dsns), capture_output=True, text=True,
                           timeout=120)
    assert setup.returncode == 0, setup.stderr
    first = project(dsns)
    assert "legacy stores through change streams: cf_prod, billing_prod, subs" in first.stdout
    with following(dsns, "--max-share", "1") as process:
        an_overdue_invoice(dsns, accounts[8], days=5)
        eventually(lambda: dunning_stage(dsns, accounts[8]) == "retrying", what="corrected through the stream")
        with psycopg.connect(dsns["eventstore"]) as conn:  # our own writes come back, through the stream

            def back() -> bool:
                return conn.execute("SELECT count(*) FROM recompute_events WHERE originator_id = %s AND "
                                    "convert_from(state, 'UTF8')::jsonb ->> 'table' IN ('dunning', 'subs_dunning')",
                                    (accounts[8],)).fetchone()[0] == 2
            eventually(back, what="the written rows observed")
        time.sleep(1.0)
        code, _ = stop(process)
    assert code == 0 and len(applied(dsns)) == 3
