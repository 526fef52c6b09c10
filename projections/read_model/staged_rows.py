"""The legacy rows a backfill compares against: each store read once, kept by partition.

    for job in stage_jobs(...): stage_store(job)        # one Dask task per store, before the partitions
    staged_rows(eventstore_dsn, generation, partition)  # (account_id, rows, None), sorted by account

A partition needs its accounts' legacy rows, but the legacy tables have no index on account_id
(we don't change their schema), so a partition reading them itself scans every table: a backfill
of 32 partitions scanned each 32 times (at 10,000 accounts: 2.5 s of a 10.9 s backfill, growing
with the fleet). Instead each store is read once, in one REPEATABLE READ snapshot
(legacy_rows.StoreSnapshot.documents), and every account's rows are kept as the store sent them,
under the account's partition, in `read_model_staged_rows` (tables.py); each partition then reads
its own by key. Every store is staged anew by each run, in one transaction per store (a rerun
compares against the rows as they are then, as a partition reading the stores itself did), and
a backfill drops the generation's staged rows once every partition is built. The table is
UNLOGGED: it is scratch, and what a crash loses the rerun stages again.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter

import psycopg

from domain.legacy_tables import COMPARED_BY_STORE
from domain.partitions import partition_of
from projections.legacy_rows import AccountRange, LegacyRows, Rows, StoreSnapshot, parse_rows

TABLE = "read_model_staged_rows"  # tables.py


@dataclass(frozen=True)
class StageJob:
    dsns: dict[str, str]
    generation: int
    partitions: int  # the generation's partition count
    todo: tuple[int, ...]  # the partitions to build: only their accounts are staged
    store: str


def stage_store(job: StageJob) -> int:
    """Stages one store's rows of the accounts of `job.todo`, replacing what any earlier run staged
    of that store (one transaction); returns the accounts staged."""
    todo = set(job.todo)
    staged = 0
    snapshot = StoreSnapshot(job.dsns[job.store], job.store)
    try:
        with psycopg.connect(job.dsns["eventstore"]) as conn, conn.transaction():
            # two runs of one task at once (a lost worker's task rerun while the first still runs): one after the other
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('recompute.staged_rows'), hashtext(%s))", (job.store,))
            conn.execute(f"DELETE FROM {TABLE} WHERE store = %s", (job.store,))
            with conn.cursor() as cur, cur.copy(
                    f"COPY {TABLE} (generation, partition, store, account_id, rows) FROM STDIN") as copy:
                for account_id, document, _ in snapshot.documents(AccountRange()):
                    partition = partition_of(account_id, job.partitions)
                    if partition in todo:
                        copy.write_row((job.generation, partition, job.store, account_id, document))
                        staged += 1
    finally:
        snapshot.close()
    return staged


def staged_rows(eventstore_dsn: str, generation: int, partition: int) -> LegacyRows:
    """Each account of the partition with rows in some store: all its stores' rows, in code-point
    order of the account (as legacy_rows.by_account merges)."""
    with psycopg.connect(eventstore_dsn) as conn, conn.cursor() as cur, cur.copy(
            f"COPY (SELECT account_id, rows FROM {TABLE} WHERE generation = %s AND partition = %s "
            "ORDER BY account_id COLLATE \"C\", store) TO STDOUT (FORMAT BINARY)", (generation, partition)) as copy:
        copy.set_types(["text", "bytea"])
        for account_id, documents in groupby(copy.rows(), key=itemgetter(0)):
            rows: Rows = {}
            for _, document in documents:
                parse_rows(document, into=rows)
            yield account_id, rows, None


def drop_staged(conn: psycopg.Connection, generation: int) -> None:
    conn.execute(f"DELETE FROM {TABLE} WHERE generation = %s", (generation,))


def stage_jobs(dsns: dict[str, str], generation: int, partitions: int, todo: list[int]) -> list[StageJob]:
    """One job per legacy store."""
    return [StageJob(dsns=dsns, generation=generation, partitions=partitions, todo=tuple(todo), store=store)
            for store in COMPARED_BY_STORE]
