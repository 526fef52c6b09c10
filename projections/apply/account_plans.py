"""Plan a chosen set of accounts again, keeping their true states: what `apply` writes from.

`plan` keeps only corrections. `apply` then needs, for the accounts it will change, the true state
too (stage_since, the entitlement source, the `because` refs that justify each correction), and
the corrections as of the moment it writes. So each batch of accounts goes through the evaluation
engine again (projections/evaluation/engine.py), this time with reasons; held rows stay held there too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from domain.catalog import Catalog
from domain.diff import Correction
from domain.events import AccountEvent
from domain.fold import Folding
from domain.owners import Owners
from domain.rules import Rules
from domain.state import TrueState
from eventlog.account_range import AccountRange
from eventlog.stores import Stores
from ingestion.legacy.schema import blocked_tables
from projections.drift import attach_drift
from projections.evaluation.engine import evaluate
from projections.evaluation.sources import StoreReader


@dataclass(frozen=True)
class AccountPlan:
    state: TrueState
    corrections: list[Correction]


def replan(stores: Stores, rules: Rules, as_of: datetime, catalog: Catalog,
           accounts: Sequence[str], *, owners: Owners | None = None) -> list[AccountPlan]:
    """The true state and corrections of each of `accounts` that exists, in id order (with
    `owners`, each correction with its drift: projections/drift.py)."""
    plans = [AccountPlan(e.state, e.corrections)
             for e in evaluate(StoreReader(stores), rules, as_of, catalog, AccountRange(ids=tuple(accounts)),
                               blocked=blocked_tables(stores), explain=True)
             if isinstance(e.state, TrueState) and e.state.account_exists]
    return plans if owners is None else with_drift(stores, catalog, rules, as_of, plans, owners)


def with_drift(stores: Stores, catalog: Catalog, rules: Rules, as_of: datetime, plans: Sequence[AccountPlan],
               owners: Owners, *, streams: Mapping[str, Sequence[AccountEvent]] | None = None,
               starts: Mapping[str, Folding] | None = None) -> list[AccountPlan]:
    """The plans, each correction with its drift (projections/drift.py; `streams`: already read;
    `starts`: folds of them part way, where the walks may start)."""
    said = iter(attach_drift(stores, catalog, rules, as_of, [c for p in plans for c in p.corrections], owners,
                             streams=streams, starts=starts))
    return [AccountPlan(p.state, [next(said) for _ in p.corrections]) for p in plans]
