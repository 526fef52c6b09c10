"""Followers of `project`, in this process on the real PostgreSQL: level-triggered corrections,
timers from the read model's index (an injected clock), leases split and taken over, the fence,
and the circuit breaker."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from domain.rules import RULES_V1
from eventlog.own_tables import ensure_own_schema
from eventlog.stores import Stores
from ingestion.legacy.snapshot import LegacySnapshotIngester
from projections.follow import leases
from projections.follow.breaker import resume
from projections.follow.follower import Follower
from projections.follow.loop import catch_up
from projections.status import read_status, render_status
from tests.support.follow import a_calm_world, an_overdue_invoice, applied, dunning_stage

pytestmark = pytest.mark.integration


def ingest(dsns) -> None:
    for store in ("cf_prod", "billing_prod", "subs"):
        LegacySnapshotIngester(store=store, stores=Stores.from_dsns(dsns)).run()


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self):
        return self.now


@pytest.fixture
def world(stores):
    accounts = a_calm_world(stores, accounts=10)
    ensure_own_schema(stores["eventstore"])
    ingest(stores)
    return stores, accounts


def a_follower(dsns, **options) -> Follower:
    return Follower(Stores.from_dsns(dsns), RULES_V1, **{"lease_s": 2.0, **options})


def test_a_changed_account_is_corrected_once_and_the_rows_written_back_cause_no_further_write(world):
    dsns, accounts = world
    follower = a_follower(dsns)
    try:
        first = catch_up(follower)
        assert sum(r.accounts for r in first) == 10 and sum(r.applied for r in first) == 0
        an_overdue_invoice(dsns, accounts[3], days=5)
        ingest(dsns)
        [report] = catch_up(follower)
        assert (report.events, report.accounts, report.applied) == (1, 1, 3)
        assert dunning_stage(dsns, accounts[3]) == "retrying"
        ingest(dsns)  # the follower's own writes come back as changed rows
        [again] = catch_up(follower)
        assert again.events == 3 and again.accounts == 1 and again.applied == 0
        assert len(applied(dsns)) == 3
    finally:
        follower.close()


def sessions_named(dsn: str, pattern: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT application_name FROM pg_stat_activity WHERE application_name "
                                           "LIKE %s AND datname = current_database()", (pattern,))]


def test_a_followers_write_sessions_are_kept_across_steps_named_after_a_run_only_while_it_writes(world):
    """Recovery waits for the sessions named after a dead run to end (projections/apply/writes.py):
    a kept session must not carry a finished run's name, or recovery would wait on a live one."""
    dsns, accounts = world
    follower = a_follower(dsns, max_share=1.0)
    try:
        catch_up(follower)
        for account in accounts[2:5]:
            an_overdue_invoice(dsns, account, days=5)
            ingest(dsns)
            [report] = catch_up(follower)
            assert report.applied == 3
        for store in ("billing_prod", "subs"):  # none named after a run (recompute apply <run id>)
            assert sessions_named(dsns[store], "recompute apply %") == ["recompute apply writes"]  # one, kept
    finally:
        follower.close()
    for _ in range(50):  # closed with the follower (a backend leaves pg_stat_activity a moment after)
        if not sessions_named(dsns["subs"], "recompute%"):
            break
        time.sleep(0.05)
    assert sessions_named(dsns["subs"], "recompute%") == []


def test_a_followers_corrections_are_audited_with_where_their_drift_came_from(world):
    dsns, accounts = world
    follower = a_follower(dsns)
    try:
        catch_up(follower)
        invoice = an_overdue_invoice(dsns, accounts[3], days=5)
        ingest(dsns)
        catch_up(follower)
    finally:
        follower.close()
    with psycopg.connect(dsns["eventstore"]) as conn:
        drifts = conn.execute("SELECT tbl, col, drift FROM correction_audit WHERE status = 'applied'").fetchall()
    assert len(drifts) == 3 and all(drift is not None for _, _, drift in drifts)
    # no dunning row, and subs_account not delinquent, until the invoice, 5 days overdue, appeared:
    # A3's handler did not follow
    found = f"billing_prod.invoices[{invoice}]"
    assert {(table, d["cause"], d["owner"], d["by"].split("@")[0]) for table, _, d in drifts} == {
        ("billing_prod.dunning", "missing", "A3", found), ("subs.subs_dunning", "missing", "A3", found),
        ("subs.subs_account", "missed_change", "A3", found)}


def test_an_invoice_crossing_three_days_overdue_moves_the_account_to_retrying_when_its_timer_comes(world):
    dsns, accounts = world
    an_overdue_invoice(dsns, accounts[0], days=3, seconds=-60)  # 3 days overdue in a minute
    ingest(dsns)
    clock = Clock()
    follower = a_follower(dsns, clock=clock, lease_s=600)
    try:
        catch_up(follower)
        assert dunning_stage(dsns, accounts[0]) == "grace"
        due = follower.seconds_to_next_due()
        assert due is not None and 50 < due <= 60
        clock.now += timedelta(seconds=due - 1)
        [early] = catch_up(follower)
        assert early.due == 0 and dunning_stage(dsns, accounts[0]) == "grace"
        clock.now += timedelta(seconds=1)
        [report] = catch_up(follower)
        assert report.due == 1 and report.events == 0
        assert dunning_stage(dsns, accounts[0]) == "retrying"
    finally:
        follower.close()


def test_an_event_newer_than_the_steps_clock_is_evaluated_once_its_time_comes(world):
    """A legacy change committed after a step took its `now`, and appended before the step read the
    log, is past the step's position but outside its fold (source_time > now): the step must come
    back to it. Before, nothing did until the account's next change (load_follow's 9 s and 18 s
    maxima: one and two changes of the account later)."""
    dsns, accounts = world
    clock = Clock()
    follower = a_follower(dsns, clock=clock, max_share=1.0)
    try:
        catch_up(follower)
        clock.now = datetime.now(UTC) - timedelta(seconds=30)  # the step's now, before the change below
        an_overdue_invoice(dsns, accounts[3], days=5)
        ingest(dsns)
        [seen] = catch_up(follower)
        assert seen.events == 1 and seen.applied == 0  # past its position, not yet in its fold
        assert dunning_stage(dsns, accounts[3]) != "retrying"
        due = follower.seconds_to_next_due()
        assert due is not None and 29 < due <= 31
        clock.now = datetime.now(UTC) + timedelta(seconds=1)
        [later] = catch_up(follower)
        assert later.due == 1 and later.applied == 3
        assert dunning_stage(dsns, accounts[3]) == "retrying"
    finally:
        follower.close()


def test_a_timer_still_comes_after_a_restart(world):
    dsns, accounts = world
    an_overdue_invoice(dsns, accounts[1], days=3, seconds=-30)
    ingest(dsns)
    clock = Clock()
    first = a_follower(dsns, clock=clock)
    catch_up(first)
    first.close()
    clock.now += timedelta(seconds=31)
    second = a_follower(dsns, clock=clock)
    try:
        [report] = catch_up(second)
        assert report.due == 1 and dunning_stage(dsns, accounts[1]) == "retrying"
    finally:
        second.close()


def two_halves(dsns, lease_s: float):
    """Two followers that balanced the partitions between them, half each."""
    one, two = a_follower(dsns, lease_s=lease_s), a_follower(dsns, lease_s=lease_s)
    one.step()
    assert len(one.held) == 32
    two.step()
    assert two.held == {}  # nothing free yet: the first gives up its extra at its next step
    one.step()
    two.step()
    assert len(one.held) == len(two.held) == 16 and not one.held.keys() & two.held.keys()
    return one, two


def test_a_second_follower_takes_half_the_partitions_and_a_frozen_ones_are_taken_over_after_the_lease(world):
    dsns, _ = world
    one, two = two_halves(dsns, lease_s=1.5)
    try:
        two.step()  # one steps no more, its session stays: as a frozen process's
        assert len(two.held) == 16
        time.sleep(1.6)
        two.step()
        assert len(two.held) == 32
    finally:
        one.close(release=False)
        two.close()


def test_a_follower_whose_session_is_gone_keeps_its_partitions_until_its_lease_runs_out(world):
    """A session ends for a live follower too (a server restart, a terminated backend, the
    supervisor's backoff): only the lease says a holder is gone."""
    dsns, _ = world
    one, two = two_halves(dsns, lease_s=60)
    try:
        one.close(release=False)  # its session ends; its lease has 60 s to run
        time.sleep(0.5)  # (the server drops a closed session from pg_stat_activity a moment later)
        two.step()
        assert len(two.held) == 16
    finally:
        two.close()


def test_a_follower_started_after_another_died_takes_its_partitions_at_once_and_fences_it_out(world):
    """kill -9 and a restart: the dead one's session, and with it its owner lock, is gone at once;
    its successor need not wait out its lease (60 s here) to hold its partitions."""
    dsns, _ = world
    one, two = two_halves(dsns, lease_s=60)
    dead = dict(one.held)
    one.close(release=False)  # as a process killed: its session ends, its lease has 60 s to run
    three = None
    try:
        three = until_holding(dsns, lease_s=60)
        assert set(three.held) == set(dead) and all(three.held[p] > dead[p] for p in dead)
        with psycopg.connect(dsns["eventstore"], autocommit=True) as conn, conn.transaction():
            assert leases.fence(conn, one.owner, dead, ttl_s=60) == {}
        two.step()
        three.step()
        assert len(two.held) == len(three.held) == 16
    finally:
        two.close()
        if three is not None:
            three.close()


def until_holding(dsns, lease_s: float, within_s: float = 5.0) -> Follower:
    """A follower started (again, while the server drops a closed session a moment later) until it
    holds partitions at its start."""
    deadline = time.monotonic() + within_s
    while True:
        started = a_follower(dsns, lease_s=lease_s)
        if started.held or time.monotonic() > deadline:
            return started
        started.close()
        time.sleep(0.1)


def test_a_follower_started_beside_live_ones_takes_none_of_their_partitions_at_its_start(world):
    dsns, _ = world
    one, two = two_halves(dsns, lease_s=60)
    three = a_follower(dsns, lease_s=60)
    try:
        assert three.held == {}
        assert len(one.held) == len(two.held) == 16
    finally:
        for follower in (one, two, three):
            follower.close()


def test_a_stale_followers_fence_fails_once_another_holds_its_partition(world):
    dsns, _ = world
    with psycopg.connect(dsns["eventstore"], autocommit=True) as conn:
        leases.ensure_leases(conn)
        mine = leases.balance(conn, "old", ttl_s=0.5)
        assert len(mine) == 32
        time.sleep(0.6)
        leases.balance(conn, "new", ttl_s=10)  # the old one's membership lapsed too: new takes all
        with conn.transaction():
            assert leases.fence(conn, "old", mine, ttl_s=10) == {}
        with conn.transaction():
            assert len(leases.fence(conn, "new", leases.balance(conn, "new", ttl_s=10), ttl_s=10)) == 32


def test_too_many_corrections_open_the_breaker_which_keeps_projecting_until_resumed_then_writes_them(world):
    dsns, accounts = world
    follower = a_follower(dsns)  # 10 accounts, 10% an hour: one account may be corrected
    try:
        catch_up(follower)
        for account in accounts[:2]:
            an_overdue_invoice(dsns, account, days=5)
        ingest(dsns)
        [report] = catch_up(follower)
        assert report.tripped and report.withheld == 2 and report.applied == 0
        assert report.accounts == 2 and applied(dsns) == []
        an_overdue_invoice(dsns, accounts[5], days=5)
        ingest(dsns)
        [still] = catch_up(follower)
        assert still.withheld == 1 and still.applied == 0  # open: projecting goes on, writing waits
        said = render_status(read_status(Stores.from_dsns(dsns), now=datetime.now(UTC), default_rules=RULES_V1,
                                          default_source="built in"))
        assert "circuit breaker: OPEN since" in said and "3 accounts withheld" in said and "--resume" in said
        with psycopg.connect(dsns["eventstore"], autocommit=True) as conn:
            assert resume(conn)
        [done] = catch_up(follower)  # the withheld ones were looked at: written, not counted again
        assert done.accounts == 3 and done.applied == 9 and done.withheld == 0 and not done.tripped
        an_overdue_invoice(dsns, accounts[7], days=5)
        ingest(dsns)
        [one] = catch_up(follower)  # the window counts from the resume: one account may be corrected
        assert one.applied == 3 and not one.tripped
    finally:
        follower.close()


def test_a_product_config_change_re_evaluates_every_account_of_the_partitions(world):
    dsns, accounts = world
    follower = a_follower(dsns, max_share=1.0)
    try:
        catch_up(follower)
        with psycopg.connect(dsns["cf_prod"]) as conn:
            conn.execute("INSERT INTO product_config VALUES ('pro', 'reports')")
        ingest(dsns)
        [report] = catch_up(follower)
        assert report.accounts == 10 and report.applied == 10  # a 'reports' entitlement each
        assert {(t, c) for _, t, _, c, _ in applied(dsns)} == {("cf_prod.entitlements", None)}
    finally:
        follower.close()


def test_after_backfill_apply_switches_the_active_generation_the_follower_follows_it_under_its_rules(world, tmp_path):
    import subprocess

    from tests.support.follow import RECOMPUTE, env_of

    dsns, accounts = world
    follower = a_follower(dsns, max_share=1.0)
    try:
        catch_up(follower)
        v2 = tmp_path / "v2.toml"
        v2.write_text('version = "v2"\nbad_debt_days_overdue = 60\n\n[[dunning.stage]]\nname = "retrying"\n'
                      'days_overdue_at_least = 1\n\n[[dunning.stage]]\nname = "grace"\n')
        done = subprocess.run([*RECOMPUTE, "backfill", "--rules", str(v2), "--apply", "--workers", "1"],
                              env=env_of(dsns), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        an_overdue_invoice(dsns, accounts[2], days=2)  # retrying under v2, grace under v1
        ingest(dsns)
        [report] = catch_up(follower)
        assert report.switched and "rules v2" in report.switched and follower.rules.version == "v2"
        assert dunning_stage(dsns, accounts[2]) == "retrying"
    finally:
        follower.close()


def test_a_follower_starting_beside_a_step_in_flight_takes_no_lock_the_step_holds(world):
    """Defect 8 (followers started together deadlocked in ensure_read_model): the tables exist, so a
    follower that starts makes nothing and so locks nothing a running step holds (a step reads the
    partitions' positions, then writes states; the DDL's ALTER TABLE wanted both tables exclusively)."""
    dsns, _ = world
    a_follower(dsns).close()  # the tables are made
    started: list[Follower] = []
    with psycopg.connect(dsns["eventstore"]) as step:  # a step in flight holds its tables as Follower.step does
        step.execute("SELECT count(*) FROM read_model_partition JOIN follow_position USING (partition)").fetchone()
        step.execute("LOCK TABLE read_model_state, read_model_facts, follow_lease, follow_run IN ROW EXCLUSIVE MODE")
        starting = threading.Thread(target=lambda: started.append(a_follower(dsns)), daemon=True)
        starting.start()
        starting.join(timeout=5)
        blocked = starting.is_alive()
    starting.join(timeout=30)
    for follower in started:
        follower.close()
    assert not blocked, "the follower starting waited for the step's locks"
