from collections import Counter

import pytest

from domain.partitions import PARTITIONS, partition_of


def test_an_account_always_lands_in_the_same_partition_whatever_the_process():
    # Fixed values: a change of the hash would silently move accounts between leases and generations.
    assert [partition_of(f"acc_{i:06d}") for i in range(5)] == [partition_of(f"acc_{i:06d}", PARTITIONS) for i in range(5)]
    assert partition_of("acc_000042", 32) == int.from_bytes(__import__("hashlib").blake2b(b"acc_000042", digest_size=8).digest(), "big") % 32


def test_ten_thousand_accounts_spread_over_the_partitions_within_a_fifth_of_even():
    counts = Counter(partition_of(f"acc_{i:06d}") for i in range(10_000))
    assert set(counts) == set(range(PARTITIONS))
    assert max(counts.values()) < 1.2 * 10_000 / PARTITIONS


def test_a_partition_count_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        partition_of("acc_000001", 0)
