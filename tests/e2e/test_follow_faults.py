"""`project --follow` under what operators do (issue 17): its server restarted, its LISTEN backend
terminated, the broker gone for a while, one of two followers frozen inside a step, followers
started together on a fresh event store. Each on a cluster of the test's own (tests/support/clusters.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import ExitStack

import psycopg
import pytest

from domain.partitions import partition_of
from projections.follow import leases
from simulation.harness.databases import STORES, scratch_databases
from tests.support.follow import (
    RECOMPUTE,
    a_calm_world,
    an_overdue_invoice,
    applied,
    dunning_stage,
    env_of,
    eventually,
    following,
    stop,
)
from tests.support.proxy import a_proxy

pytestmark = pytest.mark.integration

BROKER = ("127.0.0.1", 5672)


@pytest.fixture
def private_world(private_cluster):
    with scratch_databases(*STORES, server=private_cluster.server) as dsns:
        yield private_cluster, dsns, a_calm_world(dsns, accounts=10)


def said(process, text: str) -> list[str]:
    return [line for line in process.log_lines if text in line]


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_server_restarted_under_the_follower_is_a_logged_pause_and_it_goes_on_correcting(private_world, mode):
    cluster, dsns, accounts = private_world
    with following(dsns, "--max-share", "1") as process:
        an_overdue_invoice(dsns, accounts[0], days=5)
        eventually(lambda: dunning_stage(dsns, accounts[0]) == "retrying", what="corrected before the restart")
        cluster.restart(mode)
        an_overdue_invoice(dsns, accounts[1], days=5)
        eventually(lambda: dunning_stage(dsns, accounts[1]) == "retrying" or process.poll() is not None,
                   what="corrected after the restart")
        assert process.poll() is None, "".join(process.log_lines)
        eventually(lambda: said(process, "the event store is back"), within=10, what="a line saying it is back")
        code, _ = stop(process)
    assert code == 0, "".join(process.log_lines)
    assert len(said(process, "the event store is gone")) == 1, "".join(process.log_lines)  # not one per retry
    assert {a for a, *_ in applied(dsns)} == {accounts[0], accounts[1]}


def test_the_listen_backend_terminated_is_opened_again_without_an_exit(private_world):
    cluster, dsns, accounts = private_world

    def wake_pids() -> list[int]:
        with psycopg.connect(dsns["eventstore"], autocommit=True) as conn:
            return [pid for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'recompute follow wake'")]

    with following(dsns, "--max-share", "1") as process:
        [first] = eventually(wake_pids, what="the LISTEN session")
        with psycopg.connect(dsns["eventstore"], autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (first,))
        an_overdue_invoice(dsns, accounts[2], days=5)
        eventually(lambda: dunning_stage(dsns, accounts[2]) == "retrying" or process.poll() is not None,
                   what="corrected after the LISTEN backend was terminated")
        assert process.poll() is None, "".join(process.log_lines)
        eventually(lambda: [pid for pid in wake_pids() if pid != first], within=10, what="a new LISTEN session")
        code, _ = stop(process)
    assert code == 0, "".join(process.log_lines)


@pytest.mark.broker
@pytest.mark.slow
def test_a_broker_outage_keeps_events_in_the_outbox_says_so_once_and_sends_them_when_it_is_back(private_world):
    _, dsns, accounts = private_world

    def outbox() -> dict[str, int]:
        with psycopg.connect(dsns["eventstore"]) as conn:
            return dict(conn.execute("SELECT status, count(*) FROM outbox_event GROUP BY status").fetchall())

    with a_proxy(BROKER) as proxy, following(
            dsns, "--max-share", "1", RECOMPUTE_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{proxy.port}//") as process:
        an_overdue_invoice(dsns, accounts[3], days=5)
        eventually(lambda: outbox().get("sent"), what="the first event sent through the proxy")
        proxy.down()
        an_overdue_invoice(dsns, accounts[4], days=5)
        eventually(lambda: dunning_stage(dsns, accounts[4]) == "retrying", what="corrected with the broker down")
        eventually(lambda: said(process, "the broker is gone"), within=15, what="a line saying the broker is gone")
        assert outbox().get("ready"), "the event waits in the outbox"
        time.sleep(6)  # a relay retry or two: still one line
        proxy.up()
        eventually(lambda: not outbox().get("ready"), within=20, what="the waiting event sent")
        eventually(lambda: said(process, "the broker is back"), within=5, what="a line saying it is back")
        code, _ = stop(process)
    assert code == 0
    assert len(said(process, "the broker is gone")) == 1 and len(said(process, "the broker is back")) == 1, \
        "".join(process.log_lines)


def followers_at_once(dsns: dict[str, str], count: int, *args: str) -> list[subprocess.Popen]:
    return [subprocess.Popen([*RECOMPUTE, "project", "--follow", *args], env=env_of(dsns, PYTHONUNBUFFERED="1"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(count)]


@pytest.mark.parametrize("count", [2, 4])
def test_followers_started_at_the_same_instant_on_a_fresh_event_store_all_start(private_cluster, count):
    with scratch_databases(*STORES, server=private_cluster.server) as dsns:
        a_calm_world(dsns, accounts=10)
        processes = followers_at_once(dsns, count, "--lease", "2", "--max-share", "1")
        try:
            firsts = [p.stdout.readline() for p in processes]
            time.sleep(1.0)
            alive = [p.poll() is None for p in processes]
        finally:
            for p in processes:
                p.send_signal(signal.SIGTERM)
            outs = [p.communicate(timeout=60) for p in processes]
        errors = "".join(err for _, err in outs)
        assert all(f.startswith("projection: generation") for f in firsts), errors
        assert all(alive) and "Deadlock" not in errors, errors
        assert [p.returncode for p in processes] == [0] * count, errors


@pytest.mark.slow
def test_a_follower_frozen_inside_a_step_loses_its_partitions_within_the_lease_and_writes_nothing_after(
        private_cluster):
    with scratch_databases(*STORES, server=private_cluster.server) as dsns:
        accounts = a_calm_world(dsns, accounts=60)
        with ExitStack() as stack:
            one = stack.enter_context(following(dsns, "--lease", "3", "--max-share", "1"))
            two = stack.enter_context(following(dsns, "--lease", "3", "--max-share", "1"))
            with psycopg.connect(dsns["eventstore"], autocommit=True) as conn:
                eventually(lambda: len(leases.owners(conn)) == 2, what="both followers hold partitions")
                owner = {int(o.split(":")[1]): o for o in leases.owners(conn)}[one.pid]
                frozen = freeze_inside_a_step(dsns, conn, one, owner, accounts)
                assert frozen, "the follower was never caught inside a step"
                stopped_at = time.monotonic()
                try:
                    theirs = [a for a in accounts if partition_of(a, 32) in frozen]
                    target = theirs[0]
                    eventually(lambda: set(leases.owners(conn)) == {o for o in leases.owners(conn) if o != owner}
                               and sum(map(len, leases.owners(conn).values())) == 32,
                               within=15, what="the live follower holds every partition")
                    taken_after = time.monotonic() - stopped_at
                    an_overdue_invoice(dsns, target, days=5, invoice_id=f"inv_frozen_{target[4:]}")
                    eventually(lambda: dunning_stage(dsns, target) == "retrying", within=15,
                               what="a drift in the frozen one's partition corrected by the other")
                finally:
                    os.kill(one.pid, signal.SIGCONT)
            time.sleep(2.0)  # the woken one finishes what it had in hand: its fence no longer holds
            stop(two)
            stop(one)
        assert taken_after < 3 * 2.5, f"taken over after {taken_after:.1f} s"
        written = [row for row in applied(dsns) if row[0] == target]
        assert len(written) == len(set(written)), "nothing applied twice"


def freeze_inside_a_step(dsns, conn, process, owner: str, accounts: list[str], tries: int = 60) -> set[int]:
    """SIGSTOPs `process` while its session is idle in a step's fence transaction (its lease rows
    locked: the fence ran, or a statement after it; not balance's transaction, which locks none it
    keeps): drifts many accounts so its steps are long, stops it, and looks; not inside one: SIGCONT
    and again. Returns the partitions it held then."""
    for attempt in range(tries):
        for account in accounts[attempt % 3::3]:
            an_overdue_invoice(dsns, account, days=1 + attempt % 5, invoice_id=f"inv_{account[4:]}_f{attempt}")
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            if in_a_step(conn, owner):
                os.kill(process.pid, signal.SIGSTOP)
                time.sleep(0.2)
                if in_a_step(conn, owner):
                    return set(leases.owners(conn).get(owner, []))
                os.kill(process.pid, signal.SIGCONT)
            time.sleep(0.005)
    return set()


def in_a_step(conn, owner: str) -> bool:
    return bool(conn.execute(
        "SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND state = 'idle in transaction' "
        "AND (query LIKE '%%AS h(partition, epoch)%%' OR (query NOT LIKE '%%follow_member%%' "
        "     AND query NOT LIKE '%%follow_lease%%'))", (f"recompute follow {owner}",)).fetchone())


@pytest.mark.slow
def test_a_frozen_followers_change_streams_are_released_within_its_lease_so_the_other_reads_the_stores(
        private_world):
    """The whole follower frozen (its ingest process too): its replication sessions stop answering,
    and the server ends them after a lease (wal_sender_timeout), so the live follower's ingest opens
    the slots and a change in a store reaches the legacy stores corrected."""
    _, dsns, accounts = private_world
    setup = subprocess.run([*RECOMPUTE, "cdc", "setup"], env=env_of(dsns), capture_output=True, text=True, timeout=120)
    assert setup.returncode == 0, setup.stderr
    with ExitStack() as stack:
        one = stack.enter_context(following(dsns, "--lease", "3", "--max-share", "1"))
        with psycopg.connect(dsns["eventstore"], autocommit=True) as conn:
            def active_slots() -> int:
                return conn.execute("SELECT count(*) FROM pg_replication_slots WHERE active").fetchone()[0]
            eventually(lambda: active_slots() == 3, what="the first follower reads the three streams")
            two = stack.enter_context(following(dsns, "--lease", "3", "--max-share", "1"))
            frozen = [one.pid, *child_pids(one.pid)]
            for pid in frozen:
                os.kill(pid, signal.SIGSTOP)
            try:
                an_overdue_invoice(dsns, accounts[5], days=5)
                eventually(lambda: dunning_stage(dsns, accounts[5]) == "retrying", within=20,
                           what="the change read through the stream by the live follower and corrected")
            finally:
                for pid in frozen:
                    os.kill(pid, signal.SIGCONT)
        stop(two)
        stop(one)


def child_pids(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        return [int(p) for p in children.read().split()]
