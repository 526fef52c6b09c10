"""`backfill`: every account's whole history replayed under new rules into a new generation beside
the active one (projections/read_model/generations.py), partition by partition on an executor;
with `activate`, the switch to it and its corrections written through the apply protocol.

    result = backfill(stores, rules, rules_text, active_rules, as_of, executor=executor, now=now)
    applied = activate(stores, result, rules, options, executor=executor)    # --apply

One backfill at a time (an advisory lock, freed if the process dies). A killed run leaves the
active generation as it was (the switch is one transaction) and the partitions it committed; a
rerun of the same rules resumes from them. Killed after the switch, the rerun finds its rules
active at that T and only finishes the writes (apply's recovery settles what was in flight).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson

from domain.catalog import fold_catalog
from domain.diff import Correction
from domain.partitions import PARTITIONS, partition_of
from domain.rules import Rules
from eventlog.one_row import one_row
from eventlog.range_reads import catalog_events, logged_accounts
from eventlog.stores import Connection, Stores
from eventlog.tail import head
from projections.apply.protocol import ApplyOptions, ApplyResult, apply, check_blast_radius
from projections.executor import Executor
from projections.plan import PlanResult
from projections.read_model import generations
from projections.read_model.generations import (
    Generation,
    Opened,
    done_partitions,
    finish,
    open_generation,
    read_generation,
    switch,
)
from projections.read_model.partition import PartitionJob, build_partitions
from projections.read_model.tables import ensure_read_model

_LOCK_ID = 7_310_009
Progress = Callable[[int, int], None]  # (partitions done, partitions in all)


class BackfillBusy(RuntimeError):
    """Another `backfill` holds the lock."""


@dataclass
class BackfillResult:
    generation: Generation
    active_rules_version: str
    resumed: bool = False
    partitions_resumed: int = 0
    dropped: tuple[Generation, ...] = ()
    already_active: bool = False
    accounts_checked: int = 0
    events_replayed: int = 0
    changes: list[dict[str, Any]] = field(default_factory=list)
    corrections: list[Correction] = field(default_factory=list)

    @property
    def accounts_changing(self) -> int:
        return len({c["account_id"] for c in self.changes})

    @property
    def accounts_disagreeing(self) -> int:
        return len({c.account_id for c in self.corrections})

    def as_json(self, *, applied: bool) -> dict[str, Any]:
        g = self.generation
        return {"as_of": g.as_of.isoformat(), "rules_version": g.rules_version, "rules_digest": g.rules_digest,
                "active_rules_version": self.active_rules_version, "accounts_checked": self.accounts_checked,
                "events_replayed": self.events_replayed,
                "against_active": {"accounts_changing": self.accounts_changing, "changes": self.changes},
                "against_legacy": {"accounts_disagreeing": self.accounts_disagreeing,
                                   "corrections": [c.as_json() for c in self.corrections]},
                "applied": applied}


def backfill(stores: Stores, rules: Rules, rules_text: str, active_rules: Rules, as_of: datetime | None,
             *, executor: Executor, now: datetime, reuse_active: bool = False, partitions: int = PARTITIONS,
             tasks: int = 1, on_progress: Progress = lambda done, total: None) -> BackfillResult:
    """Builds (or resumes) the generation of `rules` at `as_of` (None: the pending one's T, else now).
    With `reuse_active`, a generation of these rules already active at that T is taken as built.
    The partitions left to build are grouped into `tasks` pieces of work (one per worker: each reads
    the legacy tables once; partition.py)."""
    with _backfill_lock(stores) as conn:
        ensure_read_model(conn)
        active = generations.active(conn)
        if reuse_active and active is not None and active.rules_digest == rules.digest \
                and active.rules_version == rules.version and (as_of is None or active.as_of == as_of):
            opened, already_active = Opened(active, True, ()), True
        else:
            opened = open_generation(conn, rules, rules_text, as_of, partitions, now=now)
            already_active = False
        gen = opened.generation
        done = done_partitions(conn, gen.id)
        if not already_active:  # a partition built against rules since replaced is built again
            done = {p: r for p, r in done.items() if _against(r) == active_rules.digest}
        position = head(conn)
        result = BackfillResult(gen, active_rules.version, resumed=opened.resumed, partitions_resumed=len(done),
                                dropped=opened.dropped, already_active=already_active)
        reports = list(done.values())
        todo = [p for p in range(gen.partitions) if p not in done]
        if todo:
            jobs = _jobs(stores, gen, rules, active_rules, position, todo, tasks)
            on_progress(len(done), gen.partitions)
            built = len(done)
            for committed in executor.map(build_partitions, jobs):
                built += len(committed)
                on_progress(built, gen.partitions)
            reports = list(done_partitions(conn, gen.id).values())  # the tasks' reports, from their rows
        finish(conn, gen.id)
        result.generation = read_generation(conn, gen.id)
    for report in reports:
        part = orjson.loads(report)
        result.active_rules_version = part.get("active_rules_version", result.active_rules_version)
        result.accounts_checked += part["accounts_checked"]
        result.events_replayed += part["events"]
        result.changes += part["changes"]
        result.corrections += [Correction.model_validate(c) for c in part["corrections"]]
    result.changes.sort(key=lambda c: c["account_id"])
    result.corrections.sort(key=lambda c: c.account_id)
    return result


def activate(stores: Stores, result: BackfillResult, rules: Rules, options: ApplyOptions, *,
             executor: Executor, on_step: Callable[[str], None] = lambda _: None) -> ApplyResult:
    """--apply: the share guard (ApplyRefused: nothing switched, nothing written), then the switch
    in one transaction, then the corrections through the apply protocol (CAS, audit, outbox)."""
    check_blast_radius(result.accounts_disagreeing, result.accounts_checked, options)
    if not result.already_active:
        with stores.connect(purpose="backfill") as conn:
            switch(conn, result.generation.id)
    on_step("switched")
    g = result.generation
    planned = PlanResult(as_of=g.as_of, rules_version=rules.version, rules_digest=rules.digest,
                         accounts_checked=result.accounts_checked, events_folded=result.events_replayed,
                         corrections=list(result.corrections))
    return apply(stores, rules, g.as_of, replace(options, force=True), planned=planned, executor=executor,
                 on_step=on_step)


def _against(report: bytes) -> str | None:
    """The digest of the active rules a partition's report compared against."""
    return orjson.loads(report).get("active_rules_digest") if report else None


def _jobs(stores: Stores, gen: Generation, rules: Rules, active_rules: Rules, position: int,
          todo: list[int], tasks: int = 1) -> list[PartitionJob]:
    """The partitions `todo` in `tasks` (at most one per partition) jobs of nearly equal size."""
    catalog = fold_catalog(catalog_events(stores), as_of=gen.as_of)
    count = max(1, min(tasks, len(todo)))
    groups = [tuple(todo[i::count]) for i in range(count)]
    task_of = {p: i for i, group in enumerate(groups) for p in group}
    ids: list[list[str]] = [[] for _ in groups]
    for account_id in logged_accounts(stores):  # in id order, so each job's ids are too
        task = task_of.get(partition_of(account_id, gen.partitions))
        if task is not None:
            ids[task].append(account_id)
    return [PartitionJob(stores=stores, generation=gen.id, partitions=group, count=gen.partitions,
                         account_ids=tuple(mine), rules=rules, active_rules=active_rules, as_of=gen.as_of,
                         catalog=catalog, position=position)
            for group, mine in zip(groups, ids, strict=True)]


@contextmanager
def _backfill_lock(stores: Stores) -> Iterator[Connection]:
    with stores.connect(purpose="backfill", autocommit=True) as conn:
        if not one_row(conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_ID,)).fetchone())[0]:
            raise BackfillBusy("another `recompute backfill` is running; try again when it has finished")
        yield conn
