"""Account-hash partitions: the unit of work of `backfill` (one Dask task each) and, later, what
followers of `project --follow` hold leases on.

    partition_of(account_id, count) -> 0 .. count-1       stable across processes, machines, versions

Python's `hash()` is salted per process, so it cannot be used; blake2b of the id is.
"""

from __future__ import annotations

from hashlib import blake2b

PARTITIONS = 32  # the default count: enough for 2..16 workers to share evenly; fixed per generation


def partition_of(account_id: str, count: int = PARTITIONS) -> int:
    if count < 1:
        raise ValueError(f"a partition count must be at least 1, not {count}")
    digest = blake2b(account_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count
