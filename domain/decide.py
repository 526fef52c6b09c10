"""The per-account decision, pure: an account's facts and its live legacy rows -> its true state,
the corrections of those rows that nothing holds, and its held rows.

    decide(facts, rows, catalog, parked, rules, as_of)         true_state -> corrections_for -> hold
    plan_account(events, rows, catalog, parked, rules, as_of)  the same from the events (fold first)

The streaming engine that feeds it (projections/evaluation/) reads the facts (folded, or kept) and
the rows; plan, apply, the follower, backfill and the report call that engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from domain.catalog import Catalog
from domain.diff import Correction, Row, corrections_for
from domain.events import AccountEvent
from domain.facts import AccountFacts
from domain.fold import fold
from domain.held import HeldRow, hold
from domain.rules import Rules
from domain.state import TrueState
from domain.truth import true_state

Decided = tuple[TrueState, list[Correction], list[HeldRow]]


def decide(facts: AccountFacts, rows: Mapping[str, Sequence[Row]], catalog: Catalog, parked: Sequence[HeldRow],
           rules: Rules, as_of: datetime, *, explain: bool = False) -> Decided:
    """One account's true state at `as_of` (with its reasons: `explain`), the corrections of its
    legacy `rows` that no held row withholds, and its held rows."""
    state = true_state(facts, catalog, rules, as_of, explain=explain)
    corrections, held = hold(state, catalog, parked, rows, corrections_for(state, rows))
    return state, corrections, held


def plan_account(events: Sequence[AccountEvent], rows: Mapping[str, Sequence[Row]], catalog: Catalog,
                 parked: Sequence[HeldRow], rules: Rules, as_of: datetime, *, explain: bool = False) -> Decided:
    """`decide` from the account's events (fold -> true_state -> corrections_for -> hold)."""
    return decide(fold(events, as_of=as_of, legacy=False), rows, catalog, parked, rules, as_of, explain=explain)

