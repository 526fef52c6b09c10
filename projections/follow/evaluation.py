"""What a follower's step evaluates with: plan's own loop (projections/plan.evaluate, the full fold:
kept facts are of no use to a stream that just moved) over what the step read once.

    evaluate_accounts(dsns, conn, cache, rules, now, catalog, accounts) -> [(state, corrections)], [AccountPlan]

The events come from the follower's StreamCache (only what was appended since it last looked is
read), the legacy rows and parked rows of the accounts from the stores, once a step (`StepRows`,
the `RangeReader` plan.evaluate is given). Every account is evaluated without reasons; the few
with corrections again with them (what apply records as causes and bookkeeping): true_state's
state is the same either way but for `because`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from domain.catalog import Catalog
from domain.diff import Correction
from domain.events import AccountEvent
from domain.held import HeldRow, blocked_hold
from domain.legacy_tables import COMPARED_BY_STORE
from domain.owners import Owners
from domain.rules import Rules
from domain.state import TrueState
from eventlog.stores import Stores
from ingestion.legacy.schema import blocked_tables
from projections.apply.account_plans import AccountPlan, with_drift
from projections.follow.streams import StreamCache
from projections.legacy_rows import AccountRange, legacy_rows, parked_rows
from projections.plan import evaluate


@dataclass(frozen=True)
class StepRows:
    """A `RangeReader` over what one step read: events, legacy rows and parked rows by account."""

    events: Mapping[str, list[AccountEvent]]
    rows: Mapping[str, dict[str, list[dict]]]
    parked_by_account: Mapping[str, Sequence[HeldRow]]
    blocked: Mapping[str, str] = field(default_factory=dict)  # tables whose schema is not the one read
    withheld_by_block: set[str] = field(default_factory=set)  # accounts evaluate_accounts corrected nothing of

    def parked(self, accounts: AccountRange) -> Mapping[str, Sequence[HeldRow]]:
        return self.parked_by_account

    def accounts(self, accounts: AccountRange) -> Iterator[tuple[str, list[AccountEvent], dict[str, list[dict]]]]:
        assert accounts.ids is not None
        for account_id in sorted(set(accounts.ids) & self.events.keys()):
            yield account_id, self.events[account_id], self.rows.get(account_id, {})

    def kept_accounts(self, *_: object, **__: object) -> Iterator:
        raise NotImplementedError("a step evaluates from the streams (kept_facts=False)")

    def keep(self, rows: object) -> None:
        pass


def read_step(dsns: Mapping[str, str], conn: psycopg.Connection, cache: StreamCache,
              accounts: Sequence[str], blocked: Mapping[str, str] | None = None) -> StepRows:
    """The accounts' events (through `cache`, on `conn`), their legacy rows and parked rows; and the
    tables blocked (`blocked`, else read now: ingestion/legacy/schema.py)."""
    ids = AccountRange(ids=tuple(accounts))
    rows: dict[str, dict[str, list[dict]]] = {}
    for store in COMPARED_BY_STORE:
        for account_id, tables, _ in legacy_rows(dsns[store], store, ids):
            rows.setdefault(account_id, {}).update(tables)
    return StepRows(cache.read(conn, accounts), rows, parked_rows(dsns["eventstore"], ids),
                    blocked_tables(Stores.from_dsns(dsns)) if blocked is None else blocked)


def evaluate_accounts(dsns: Mapping[str, str], step: StepRows, rules: Rules, now: datetime, catalog: Catalog,
                      accounts: Sequence[str], owners: Owners | None = None
                      ) -> tuple[list[tuple[TrueState, list[Correction]]], list[AccountPlan]]:
    """Each account of the log among `accounts` (id order): its true state and corrections (none of
    a blocked table); and the plans of those with corrections, their states with reasons (with
    `owners`, each correction with its drift, from the streams the step read)."""
    evaluated = []
    step.withheld_by_block.clear()
    for _, state, corrections, held in evaluate(dsns, rules, now, catalog, AccountRange(ids=tuple(accounts)),
                                                explain=False, reader=step, kept_facts=False, blocked=step.blocked):
        evaluated.append((state, corrections))
        if any(blocked_hold(h) for h in held):
            step.withheld_by_block.add(state.account_id or "")
    corrected = tuple(state.account_id or "" for state, corrections in evaluated
                      if corrections and state.account_exists)
    plans = [AccountPlan(state, corrections) for _, state, corrections, _ in
             evaluate(dsns, rules, now, catalog, AccountRange(ids=corrected), explain=True, reader=step,
                      kept_facts=False, blocked=step.blocked) if corrections and state.account_exists] if corrected else []
    if plans and owners is not None:
        plans = with_drift(dsns["eventstore"], catalog, rules, now, plans, owners, streams=step.events)
    return evaluated, plans
