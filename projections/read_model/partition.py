"""Some partitions of a backfill, built together: the unit of work an executor runs (one Dask task each).

Partitions are account-hash sets (domain/partitions.partition_of), fixed per generation; a task
takes several of them (`backfill` groups a run's partitions into one task per worker) because a
task reads every legacy table whole once (they have no index on `account_id`): 32 tasks read each
table 32 times, 2 tasks twice (measured at 10k: the reads alone 2.6 s against 1.2 s).

For every account of the task the evaluation engine (projections/evaluation/engine.py, replaying:
StoreReader(truth_only=True) decodes only the events some rule may read) folds the whole stream
once at T and decides under the new rules against the live legacy rows (exactly what `plan --rules
FILE` finds, no table withheld); from the same facts come the fields the active rules decide
(domain/truth.ruled_fields: not a whole true state), for the report's changes. Then, in ONE
transaction on the event store: the task's partitions' old states in this generation are
deleted, their new states copied in, and each partition's `read_model_partition` row (with its
report) written. The task is idempotent: a lost worker's task run again, or run twice at once
(each partition's advisory lock, taken in partition order, orders them), leaves the same rows. States stream into the COPY as they are computed, so a worker's
memory is one account plus the partitions' reports, whatever the fleet's size.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from domain.catalog import Catalog
from domain.partitions import partition_of
from domain.rules import Rules
from domain.truth import ruled_fields
from eventlog.account_range import AccountRange
from eventlog.stores import Stores
from projections.evaluation.engine import evaluate
from projections.evaluation.kept_facts import Known
from projections.evaluation.sources import StoreReader, Streams
from projections.read_model.changes import state_changes


@dataclass(frozen=True)
class PartitionJob:
    """Partitions `partitions` (of `count`) of a generation, with every account of them."""

    stores: Stores
    generation: int
    partitions: tuple[int, ...]
    count: int  # the generation's partition count
    account_ids: tuple[str, ...]
    rules: Rules
    active_rules: Rules
    as_of: datetime
    catalog: Catalog
    position: int  # the log's highest notification id when the backfill started


@dataclass
class _Report:
    """A partition's report as it grows: each change and correction kept as its JSON (an
    orjson.Fragment, a few hundred bytes, where the dicts took several times that: a task holds
    its partitions' reports until it commits)."""

    checked: int = 0
    events: int = 0
    changes: list[orjson.Fragment] = field(default_factory=list)
    corrections: list[orjson.Fragment] = field(default_factory=list)


def build_partitions(job: PartitionJob, *, reader: Streams | None = None) -> list[tuple[int, bytes]]:
    """Builds and commits the job's partitions; returns (partition, report) for each, in the job's
    order. A report (orjson: accounts_checked, events, changes, corrections) is the bytes its row keeps."""
    reader = reader or StoreReader(job.stores, truth_only=True)
    gc.freeze()
    reports = {p: _Report() for p in job.partitions}
    with job.stores.connect(purpose="backfill a partition") as conn, conn.transaction():
        for p in sorted(job.partitions):
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (job.generation % 2**31, p))
        conn.execute("DELETE FROM read_model_state WHERE generation = %s AND partition = ANY(%s)",
                     (job.generation, list(job.partitions)))
        with conn.cursor() as cur, cur.copy(
                "COPY read_model_state (generation, account_id, partition, state, next_action_at, stream_version, "
                "as_of) FROM STDIN") as copy:
            if job.account_ids:
                for e in evaluate(reader, job.rules, job.as_of, job.catalog, AccountRange(ids=job.account_ids),
                                  blocked={}, kept_facts=False):
                    state = e.state
                    assert not isinstance(state, Known) and e.facts is not None  # replayed: always folded
                    partition = partition_of(e.account_id, job.count)
                    report = reports[partition]
                    report.events += e.folded
                    copy.write_row((job.generation, e.account_id, partition, state.model_dump_json(),
                                    state.next_action_at, e.head, job.as_of))
                    if not state.account_exists:
                        continue
                    report.checked += 1
                    report.corrections += [orjson.Fragment(orjson.dumps(c.as_json())) for c in e.corrections]
                    before = ruled_fields(e.facts, job.catalog, job.active_rules, job.as_of)
                    report.changes += [orjson.Fragment(orjson.dumps(c)) for c in state_changes(before, state)]
        done = [(p, orjson.dumps({"accounts_checked": r.checked, "events": r.events, "changes": r.changes,
                                  "corrections": r.corrections, "active_rules_version": job.active_rules.version,
                                  "active_rules_digest": job.active_rules.digest}))
                for p, r in reports.items()]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO read_model_partition (generation, partition, accounts, events, position, report) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (generation, partition) DO UPDATE SET "
                "accounts = EXCLUDED.accounts, events = EXCLUDED.events, position = EXCLUDED.position, "
                "report = EXCLUDED.report, done_at = now()",
                [(job.generation, p, reports[p].checked, reports[p].events, job.position, report)
                 for p, report in done])
    gc.unfreeze()
    return done
