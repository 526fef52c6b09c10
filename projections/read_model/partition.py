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
(each partition's advisory lock, taken in partition order, orders them), leaves the same rows.
States stream into the COPY as they are computed, and each partition's changes and corrections
into a spool (`ReportSpool`: memory up to SPOOL_BYTES, then a temporary file); the reports are
made and written one partition at a time and stay in the event store (the task returns only
which partitions it committed), so a worker's memory is one account plus one partition's report,
whatever the fleet's size. (Held in lists, the reports grew with the task: 84 MB a worker at
10k, 176 MB at 100k, `scripts/bench_engine.py`.)
"""

from __future__ import annotations

import gc
import tempfile
from contextlib import ExitStack, closing
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


SPOOL_BYTES = 256 * 1024  # a partition's changes or corrections held in memory before they go to a file


class ReportSpool:
    """JSON items (changes or corrections) kept for one report: in memory up to `max_bytes`, then
    in a temporary file; `json_array()` is them as one JSON array."""

    def __init__(self, max_bytes: int = SPOOL_BYTES) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=max_bytes)  # noqa: SIM115 - closed by close()
        self.count = 0

    def add(self, item: bytes) -> None:
        if self.count:
            self._file.write(b",")
        self._file.write(item)
        self.count += 1

    @property
    def in_memory(self) -> bool:
        return not self._file._rolled  # type: ignore[attr-defined]

    def json_array(self) -> bytes:
        self._file.seek(0)
        return b"[" + self._file.read() + b"]"

    def close(self) -> None:
        self._file.close()


@dataclass
class _Report:
    """A partition's report as it grows: counts, and each change and correction as its JSON in a spool."""

    checked: int = 0
    events: int = 0
    changes: ReportSpool = field(default_factory=ReportSpool)
    corrections: ReportSpool = field(default_factory=ReportSpool)

    def document(self, active_rules: Rules) -> bytes:
        """The report's bytes: what `orjson.dumps` of the dict makes, the arrays read from the spools."""
        head = orjson.dumps({"accounts_checked": self.checked, "events": self.events})[:-1]
        tail = orjson.dumps({"active_rules_version": active_rules.version,
                             "active_rules_digest": active_rules.digest})[1:]
        return b"".join((head, b',"changes":', self.changes.json_array(), b',"corrections":',
                         self.corrections.json_array(), b",", tail))

    def close(self) -> None:
        self.changes.close()
        self.corrections.close()


def build_partitions(job: PartitionJob, *, reader: Streams | None = None) -> list[int]:
    """Builds and commits the job's partitions; returns them. Each one's report (orjson:
    accounts_checked, events, changes, corrections, the active rules) is in its
    `read_model_partition` row, not returned: the caller reads them there (`done_partitions`)."""
    reader = reader or StoreReader(job.stores, truth_only=True)
    gc.freeze()
    with ExitStack() as spools, job.stores.connect(purpose="backfill a partition") as conn, conn.transaction():
        reports = {p: spools.enter_context(closing(_Report())) for p in job.partitions}  # closed however it ends
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
                    for c in e.corrections:
                        report.corrections.add(orjson.dumps(c.as_json()))
                    before = ruled_fields(e.facts, job.catalog, job.active_rules, job.as_of)
                    for change in state_changes(before, state):
                        report.changes.add(orjson.dumps(change))
        for p, r in reports.items():  # one report in memory at a time
            conn.execute(
                "INSERT INTO read_model_partition (generation, partition, accounts, events, position, report) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (generation, partition) DO UPDATE SET "
                "accounts = EXCLUDED.accounts, events = EXCLUDED.events, position = EXCLUDED.position, "
                "report = EXCLUDED.report, done_at = now()",
                (job.generation, p, r.checked, r.events, job.position, r.document(job.active_rules)))
    gc.unfreeze()
    return list(reports)
