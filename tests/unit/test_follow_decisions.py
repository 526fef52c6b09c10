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
