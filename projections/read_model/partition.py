"""One partition of a backfill: the unit of work an executor runs (one Dask task each).

For every account of the partition (domain/partitions.partition_of) the evaluation engine
(projections/evaluation/engine.py, replaying: StoreReader(truth_only=True) decodes only the events
some rule may read) folds the whole stream once at T and decides under the new rules against the
live legacy rows (exactly what `plan --rules FILE` finds, no table withheld); from the same facts
comes the true state under the active rules, for the report's changes. Then,
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
from typing import Any

import orjson

from domain.catalog import Catalog
from domain.rules import Rules
from domain.truth import true_state
from eventlog.account_range import AccountRange
from eventlog.stores import Stores
from projections.evaluation.engine import evaluate
from projections.evaluation.kept_facts import Known
from projections.evaluation.sources import StoreReader, Streams
from projections.read_model.changes import state_changes


@dataclass(frozen=True)
class PartitionJob:
    stores: Stores
    generation: int
    partition: int
    account_ids: tuple[str, ...]
    rules: Rules
    active_rules: Rules
    as_of: datetime
    catalog: Catalog
    position: int  # the log's highest notification id when the backfill started


def build_partition(job: PartitionJob, *, reader: Streams | None = None) -> bytes:
    """Builds and commits one partition; returns its report (orjson: accounts_checked, events,
    changes, corrections), the same bytes its row keeps."""
    reader = reader or StoreReader(job.stores, truth_only=True)
    gc.freeze()
    checked = events_read = 0
    changes: list[dict[str, Any]] = []
    corrections: list[dict[str, Any]] = []
    with job.stores.connect(purpose="backfill a partition") as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (job.generation % 2**31, job.partition))
        conn.execute("DELETE FROM read_model_state WHERE generation = %s AND partition = %s",
                     (job.generation, job.partition))
        with conn.cursor() as cur, cur.copy(
                "COPY read_model_state (generation, account_id, partition, state, next_action_at, stream_version, "
                "as_of) FROM STDIN") as copy:
            if job.account_ids:
                for e in evaluate(reader, job.rules, job.as_of, job.catalog, AccountRange(ids=job.account_ids),
                                  blocked={}, kept_facts=False):
                    state = e.state
                    assert not isinstance(state, Known) and e.facts is not None  # replayed: always folded
                    events_read += e.folded
                    copy.write_row((job.generation, e.account_id, job.partition, state.model_dump_json(),
                                    state.next_action_at, e.head, job.as_of))
                    if not state.account_exists:
                        continue
                    checked += 1
                    corrections += [c.as_json() for c in e.corrections]
                    before = true_state(e.facts, job.catalog, job.active_rules, job.as_of, explain=False)
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
