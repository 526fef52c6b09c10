"""The pure decisions of the followers: the fair share of partitions, the breaker's limit, and the
accounts new events dirty."""

from __future__ import annotations

from projections.follow.breaker import limit, trips
from projections.follow.leases import fair_share


def test_followers_share_the_partitions_evenly_rounding_up():
    assert [fair_share(32, n) for n in (0, 1, 2, 3, 5, 32, 40)] == [32, 32, 16, 11, 7, 1, 1]


def test_the_breaker_allows_a_share_of_the_accounts_and_at_least_one():
    assert limit(10_000, 0.10) == 1_000
    assert limit(5, 0.10) == 1


def test_an_account_corrected_again_within_the_window_counts_once():
    assert not trips({"acc_1"}, {"acc_1"}, 1)
    assert trips({"acc_1"}, {"acc_2"}, 1)
    assert not trips({"acc_1", "acc_2"}, set(), 1)  # nothing to write: nothing trips


def test_new_events_dirty_the_accounts_of_our_partitions_past_their_position_and_the_catalog_all():
    from domain.events import CATALOG_STREAM
    from domain.partitions import partition_of
    from projections.follow.tracking import mark_dirty

    a, b = "acc_000001", "acc_000002"
    pa, pb = partition_of(a, 32), partition_of(b, 32)
    assert pa != pb
    rows = [(5, a), (6, b), (7, a), (8, CATALOG_STREAM)]
    assert mark_dirty(rows, {pa: 0}, 32) == ({a}, {pa}, 2)
    assert mark_dirty(rows, {pa: 7, pb: 0}, 32) == ({b}, {pa, pb}, 1)
    assert mark_dirty(rows, {pa: 9}, 32) == (set(), set(), 0)


def test_a_step_takes_the_new_events_of_at_most_so_many_streams_in_the_logs_order():
    from projections.follow import tracking
    rows = [(1, "a"), (2, "b"), (3, "a"), (4, "c"), (5, "d")]
    assert tracking.first_streams(rows, 2) == [(1, "a"), (2, "b"), (3, "a")]
    assert tracking.first_streams(rows, 0) == [(1, "a")]  # never none: the step moves on
    assert tracking.first_streams(rows, 4) == rows
    assert tracking.first_streams([], 3) == []


def test_a_steps_bound_counts_only_the_streams_of_its_own_partitions():
    """With two followers, the other's streams interleave with ours in the log: counted, they took
    half of each step's bound (measured), so a backlog of ours was worked down in half-size steps."""
    from projections.follow import tracking
    rows = [(1, "a"), (2, "x"), (3, "y"), (4, "b"), (5, "z"), (6, "c")]
    mine = {"a", "b", "c"}.__contains__
    assert tracking.first_streams(rows, 2, ours=mine) == [(1, "a"), (2, "x"), (3, "y"), (4, "b"), (5, "z")]
    assert tracking.first_streams(rows, 3, ours=mine) == rows
    assert tracking.first_streams(rows, 0, ours=mine) == [(1, "a"), (2, "x"), (3, "y")]  # one of ours, never none
    assert tracking.first_streams([(1, "x"), (2, "y")], 1, ours=mine) == [(1, "x"), (2, "y")]


def test_a_follower_over_its_share_gives_up_the_partitions_it_took_last():
    """A follower that took a frozen one's partitions gives those back when it returns, not its own:
    handing over the partitions it held all along left both followers' caches cold (chaos seed 1)."""
    from projections.follow.leases import surplus
    mine = dict.fromkeys(range(32), 1)
    taken_last = list(range(16, 32)) + list(range(16))  # 16-31 held all along, 0-15 taken over since
    assert surplus(mine, 16, taken_last) == list(range(16))
    assert surplus(mine, 32, taken_last) == []
    assert surplus({3: 1, 9: 1, 5: 1}, 1, []) == [5, 9]  # none known: the highest given up, as before


def test_a_steps_bound_follows_the_time_an_account_took_to_stay_within_a_share_of_the_lease():
    from projections.follow.follower import next_bound
    assert next_bound(0.002, budget_s=1.0) == 250  # 2 ms an account: the ceiling
    assert next_bound(0.012, budget_s=1.0) == 83  # a loaded machine: 1 s / 12 ms
    assert next_bound(0.5, budget_s=1.0) == 20  # never below the floor
    assert next_bound(None, budget_s=1.0) == 250  # nothing measured yet
    assert next_bound(0.5, budget_s=1.0, ceiling=5) == 5  # a ceiling below the floor (a test's) stands
    assert next_bound(0.002, budget_s=1.0, last=30) == 60  # at most twice the last step: the next may be cold
    assert next_bound(0.002, budget_s=1.0, last=3) == 20  # but never below the floor
    assert next_bound(None, budget_s=1.0, last=0) == 20


def test_an_account_wakes_at_its_next_action_or_its_earliest_event_the_fold_left_out():
    from datetime import UTC, datetime, timedelta

    from projections.follow.tracking import wake_at
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    soon, later = now + timedelta(seconds=2), now + timedelta(hours=1)
    assert wake_at(later, [now - timedelta(seconds=5), now], now) == later  # nothing left out
    assert wake_at(later, [now, later + timedelta(1), soon], now) == soon
    assert wake_at(None, [soon], now) == soon
    assert wake_at(soon, [later], now) == soon
    assert wake_at(None, [], now) is None
