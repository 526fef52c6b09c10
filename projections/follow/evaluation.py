"""What a follower's step evaluates with: the evaluation engine (projections/evaluation/engine.py,
replaying: kept facts are of no use to a stream that just moved) over what the step read once.

    read_step(stores, conn, cache, accounts) -> StepRows
    evaluate_accounts(stores, step, rules, now, catalog, accounts) -> [(state, corrections)], [AccountPlan]

The events come from the follower's StreamCache (only what was appended since it last looked is
read), each account's fold goes on from the last step's (follow/folds.py), the legacy rows and
parked rows of the accounts from the stores, once a step (`StepRows`, the `Streams` the engine is
given). Each account is read, folded and decided once, without
reasons; what apply records as causes needs some: an account with corrections has its state made
again with only the reasons its corrections' causes read (engine `explain_corrected`; true_state's
state is the same either way but for `because`, which the read model does not keep).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from domain.catalog import Catalog
from domain.diff import Correction
from domain.events import AccountEvent
from domain.held import HeldRow, blocked_hold
from domain.legacy_tables import COMPARED_BY_STORE
from domain.owners import Owners
from domain.rules import Rules
from domain.state import TrueState
from eventlog.account_range import AccountRange
from eventlog.parked import parked_rows
from eventlog.stores import Connection, Stores
from ingestion.legacy.schema import blocked_tables, unblocked_stores
from projections.apply.account_plans import AccountPlan, with_drift
from projections.evaluation.engine import evaluate
from projections.evaluation.kept import Replayed
from projections.follow.folds import KeptFolds
from projections.follow.streams import StreamCache
from projections.legacy_rows import Rows, legacy_rows


@dataclass(frozen=True)
class StepRows:
    """The `Streams` of what one step read: events, legacy rows and parked rows by account."""

    events: Mapping[str, list[AccountEvent]]
    rows: Mapping[str, Rows]
    parked_by_account: Mapping[str, Sequence[HeldRow]]
    blocked: Mapping[str, str] = field(default_factory=dict)  # tables whose schema is not the one read
    withheld_by_block: set[str] = field(default_factory=set)  # accounts evaluate_accounts corrected nothing of
    folds: KeptFolds | None = None  # the follower's folds from step to step (None: each stream folded whole)

    def parked(self, accounts: AccountRange) -> Mapping[str, Sequence[HeldRow]]:
        return self.parked_by_account

    def accounts(self, accounts: AccountRange) -> Iterator[tuple[str, Replayed, Rows]]:
        assert accounts.ids is not None
        for account_id in sorted(set(accounts.ids) & self.events.keys()):
            events = self.events[account_id]
            yield (account_id, events if self.folds is None else self.folds.stream(account_id, events),
                   self.rows.get(account_id, {}))


def read_step(stores: Stores, conn: Connection, cache: StreamCache, accounts: Sequence[str],
              blocked: Mapping[str, str] | None = None, folds: KeptFolds | None = None) -> StepRows:
    """The accounts' events (through `cache`, on `conn`), their legacy rows and parked rows; and the
    tables blocked (`blocked`, else read now: ingestion/legacy/schema.py). `folds`: the evaluation
    carries each account's fold on from the last step (follow/folds.py)."""
    ids = AccountRange(ids=tuple(accounts))
    blocked = blocked_tables(stores) if blocked is None else blocked
    rows: dict[str, Rows] = {}
    unblocked = unblocked_stores(blocked)
    for store in COMPARED_BY_STORE:
        for account_id, tables, _ in legacy_rows(stores, store, ids, unblocked=store in unblocked):
            rows.setdefault(account_id, {}).update(tables)
    return StepRows(cache.read(conn, accounts), rows, parked_rows(stores, ids), blocked, folds=folds)


def evaluate_accounts(stores: Stores, step: StepRows, rules: Rules, now: datetime, catalog: Catalog,
                      accounts: Sequence[str], owners: Owners | None = None
                      ) -> tuple[list[tuple[TrueState, list[Correction]]], list[AccountPlan]]:
    """Each account of the log among `accounts` (id order): its true state and corrections (none of
    a blocked table); and the plans of those with corrections, their states with the reasons their
    causes read (with `owners`, each correction with its drift, from the streams the step read)."""
    evaluated: list[tuple[TrueState, list[Correction]]] = []
    plans: list[AccountPlan] = []
    step.withheld_by_block.clear()
    for e in evaluate(step, rules, now, catalog, AccountRange(ids=tuple(accounts)), blocked=step.blocked,
                      explain_corrected=True):
        assert isinstance(e.state, TrueState)  # a step's streams are replayed: every state is decided
        evaluated.append((e.state, e.corrections))
        if any(blocked_hold(h) for h in e.held):
            step.withheld_by_block.add(e.state.account_id or "")
        if e.explained is not None:
            plans.append(AccountPlan(*e.explained))
    starts = step.folds.take_starts() if step.folds is not None else {}
    if plans and owners is not None:
        plans = with_drift(stores, catalog, rules, now, plans, owners, streams=step.events, starts=starts)
    return evaluated, plans
