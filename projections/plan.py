"""`plan`: the true state of every account (or one) against its legacy rows, as corrections.

A thin caller of the evaluation engine (projections/evaluation/engine.py: kept facts where they
stand, else the log; domain/decide.py per account). With workers > 1 the accounts are split into
ranges, one piece of work each for the executor; every range streams, so memory is one account
per process. Plan asks the engine for no states (`states=False`), so an account whose kept result
stands is not read at all. `kept_facts=False` replays everything and keeps nothing (the exactness
test and the benchmarks). Keeping facts writes only the read model's own table, never a legacy
store or the log, and is skipped when the event store cannot be written.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from domain.catalog import Catalog, fold_catalog
from domain.diff import Correction
from domain.held import HeldRow
from domain.owners import NO_OVERRIDES, Owners
from domain.rules import Rules
from eventlog.account_range import AccountRange
from eventlog.range_reads import catalog_events
from eventlog.stores import Stores
from ingestion.legacy.schema import blocked_tables, describe, unblocked_stores
from projections.drift import attach_drift
from projections.evaluation.engine import evaluate
from projections.evaluation.kept import ManyToFold
from projections.evaluation.kept_facts import Known
from projections.evaluation.ranges import account_ranges, split
from projections.evaluation.sources import StoreReader, Streams
from projections.executor import Executor, InlineExecutor

# Under this many streams to fold, a plan runs in this process: starting the workers
# (1.1-1.5 s for two) costs more than they save: measured at 10,000 accounts, a first plan
# takes 11.1 s here and 8.1 s on two workers (~1.1 ms an account folded and kept).
INLINE_BELOW = 1_000


@dataclass
class PlanResult:
    as_of: datetime
    rules_version: str
    rules_digest: str = ""
    accounts_checked: int = 0
    events_folded: int = 0
    accounts_read: int = 0  # streams of the log evaluated (an account cf_prod does not know too), folded or kept
    accounts_known: int = 0  # of those, the accounts whose kept result stood: rows not read, nothing diffed
    corrections: list[Correction] = field(default_factory=list)
    held: list[HeldRow] = field(default_factory=list)  # rows of the accounts checked that nothing is planned for
    blocked: dict[str, str] = field(default_factory=dict)  # "store.table" -> why: nothing of it corrected

    @property
    def accounts_disagreeing(self) -> int:
        return len({c.account_id for c in self.corrections})

    def merge(self, other: PlanResult) -> None:
        self.accounts_checked += other.accounts_checked
        self.events_folded += other.events_folded
        self.accounts_read += other.accounts_read
        self.accounts_known += other.accounts_known
        self.corrections.extend(other.corrections)
        self.held.extend(other.held)

    def as_json(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "rules_version": self.rules_version,
            "rules_digest": self.rules_digest,
            "accounts_checked": self.accounts_checked,
            "accounts_disagreeing": self.accounts_disagreeing,
            "corrections": [c.as_json() for c in self.corrections],
            "held": [h.as_json() for h in self.held],
            "blocked": dict(sorted(self.blocked.items())),
        }

    def held_lines(self) -> list[str]:
        """For the text summary: how many rows are held, by reason."""
        lines = [f"{line}: nothing of it is corrected until its schema matches again" for line in describe(self.blocked)]
        if not self.held:
            return lines
        lines += [f"held, not corrected: {len(self.held)} rows in {len({h.account_id for h in self.held})} accounts "
                 "(`explain ACCOUNT` shows why)"]
        for reason, count in sorted(Counter(h.reason for h in self.held).items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {count:>6}  {reason}")
        return lines


def plan(stores: Stores, rules: Rules, as_of: datetime, *, account: str | None = None,
         workers: int = 2, kept_facts: bool = True, executor: Executor | None = None,
         on_progress: Callable[[int, int], None] = lambda done, total: None,
         owners: Owners | None = NO_OVERRIDES, legacy_problems: Mapping[str, Mapping[str, str]] | None = None
         ) -> PlanResult:
    """Every account (or one) planned: the accounts split into `workers` ranges, each range a piece
    of work for `executor` (the Dask one from bootstrap; one account or range runs here, and so
    does the whole fleet, in one range, when fewer than INLINE_BELOW streams are to be folded:
    it is first planned here, and given to the workers only if the reader finds that many).
    `kept_facts=False` replays every stream (the benchmarks' and the exactness tests' baseline).
    Each correction says where its drift came from (projections/drift.py) by `owners`; None: not
    said (apply, which says it for the corrections it writes). `legacy_problems`: the stores' schema
    problems as the command's bootstrap just read them (App.legacy_problems), not read again."""
    catalog = fold_catalog(catalog_events(stores), as_of=as_of)
    result = PlanResult(as_of=as_of, rules_version=rules.version, rules_digest=rules.digest,
                        blocked=blocked_tables(stores, legacy_problems))
    task = partial(plan_range, stores, rules, as_of, catalog, kept_facts=kept_facts, blocked=result.blocked,
                   owners=owners)
    if account:
        ranges = [AccountRange(ids=(account,))]
    elif workers > 1 and kept_facts and executor is not None and not isinstance(executor, InlineExecutor):
        try:  # the whole fleet here in one range, no worker started, unless there is much to fold
            on_progress(0, 1)
            result.merge(task(AccountRange(), reader=StoreReader(stores, fold_at_most=INLINE_BELOW,
                                                                 unblocked=unblocked_stores(result.blocked))))
            on_progress(1, 1)
            return result
        except ManyToFold as many:  # its streams, read already, are split: not read again
            ranges = split(many.streams, workers)
    else:
        ranges = account_ranges(stores, workers)
    if len(ranges) == 1 or executor is None:
        executor = InlineExecutor()
    on_progress(0, len(ranges))
    for done, part in enumerate(executor.map(task, ranges), 1):
        result.merge(part)
        on_progress(done, len(ranges))
    return result


def plan_range(stores: Stores, rules: Rules, as_of: datetime, catalog: Catalog, accounts: AccountRange,
               reader: Streams | None = None, kept_facts: bool = True, blocked: Mapping[str, str] | None = None,
               owners: Owners | None = None) -> PlanResult:
    """Plans one range of accounts: the unit of work of one process (`reader`: what it reads, the
    stores by default; `blocked`: plan's tables blocked; with `owners`, each correction with its drift)."""
    result = PlanResult(as_of=as_of, rules_version=rules.version, rules_digest=rules.digest)
    if blocked is None:  # a range planned alone: the tables blocked now, when it reads the stores
        blocked = blocked_tables(stores) if reader is None else {}
    gc.freeze()  # what is alive now lives for the whole run; the collector need not walk it per account
    for e in evaluate(reader or StoreReader(stores), rules, as_of, catalog, accounts, blocked=blocked,
                      kept_facts=kept_facts, states=False):
        result.events_folded += e.folded
        result.accounts_read += 1
        result.accounts_known += isinstance(e.state, Known)
        if e.state.account_exists:
            result.accounts_checked += 1
            result.corrections.extend(e.corrections)
            result.held.extend(e.held)
    if owners is not None and result.corrections:
        result.corrections = attach_drift(stores, catalog, rules, as_of, result.corrections, owners,
                                          kept=kept_facts)
    return result
