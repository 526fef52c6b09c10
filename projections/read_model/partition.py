"""One partition of a backfill: the unit of work an executor runs (one Dask task each).

For every account of the partition (domain/partitions.partition_of) the whole stream is read
(legacy_rows.StoreReader.truth_accounts over AccountRange(ids=...): only the events some rule may
read are decoded) and folded once at T; from the same facts come
the true state under the new rules and under the active rules, and the corrections of the new
rules against the live legacy rows (plan.decide: exactly what `plan --rules FILE` finds). Then,
in ONE transaction on the event store: the partition's old states in this generation are deleted,
its new states copied in, and its `read_model_partition` row (with its report) written. The task is
idempotent: a lost worker's task run again, or run twice at once (the advisory lock orders them),
leaves the same rows. States stream into the COPY as they are computed, so a worker's memory is one
account plus the partition's report, whatever the fleet's size.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from datetime import datetime

import orjson
import psycopg

from domain.catalog import Catalog
from domain.fold import fold
from domain.rules import Rules
from domain.truth import true_state
from projections.legacy_rows import AccountRange, StoreReader
from projections.plan import decide
from projections.read_model.changes import state_changes


@dataclass(frozen=True)
class PartitionJob:
    dsns: dict[str, str]
    generation: int
    partition: int
    account_ids: tuple[str, ...]
    rules: Rules
    active_rules: Rules
    as_of: datetime
    catalog: Catalog
    position: int  # the log's highest notification id when the backfill started


def build_partition(job: PartitionJob, *, reader: StoreReader | None = None) -> bytes:
    """Builds and commits one partition; returns its report (orjson: accounts_checked, events,
    changes, corrections), the same bytes its row keeps."""
    reader = reader or StoreReader(job.dsns)
    gc.freeze()
    checked = events_read = 0
    changes: list[dict] = []
    corrections: list[dict] = []
    with psycopg.connect(job.dsns["eventstore"], options="-c TimeZone=UTC") as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (job.generation % 2**31, job.partition))
        conn.execute("DELETE FROM read_model_state WHERE generation = %s AND partition = %s",
                     (job.generation, job.partition))
        with conn.cursor() as cur, cur.copy(
                "COPY read_model_state (generation, account_id, partition, state, next_action_at, stream_version, "
                "as_of) FROM STDIN") as copy:
            if job.account_ids:
                accounts = AccountRange(ids=job.account_ids)
                parked = reader.parked(accounts)
                for account_id, stream, rows in reader.truth_accounts(accounts):
                    events_read += stream.count
                    # the truth reads no observed rows, nor the events truth_events leaves undecoded
                    facts = fold(stream.for_fold(job.as_of), as_of=job.as_of, legacy=False)
                    state, found, _ = decide(facts, rows, job.catalog, parked.get(account_id, ()), job.rules,
                                                 job.as_of)
                    copy.write_row((job.generation, account_id, job.partition, state.model_dump_json(),
                                    state.next_action_at, stream.head, job.as_of))
                    if not state.account_exists:
                        continue
                    checked += 1
                    corrections += [c.as_json() for c in found]
                    before = true_state(facts, job.catalog, job.active_rules, job.as_of, explain=False)
                    changes += state_changes(before, state)
        report = orjson.dumps({"accounts_checked": checked, "events": events_read, "changes": changes,
                               "corrections": corrections, "active_rules_version": job.active_rules.version,
                               "active_rules_digest": job.active_rules.digest})
        conn.execute(
            "INSERT INTO read_model_partition (generation, partition, accounts, events, position, report) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (generation, partition) DO UPDATE SET "
            "accounts = EXCLUDED.accounts, events = EXCLUDED.events, position = EXCLUDED.position, "
            "report = EXCLUDED.report, done_at = now()",
            (job.generation, job.partition, checked, events_read, job.position, report))
    gc.unfreeze()
    return report
