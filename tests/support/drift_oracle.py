"""domain/drift.py's walk from scratch, as it was before it went incremental: the oracle the walk is
held to (tests/unit/test_domain_drift_walk.py). At every instant the facts are folded afresh
(`fold`), the true state asks `stage_since` of the whole history, and the corrected tables' rows are
read again from the first event; the drift origins are then read off those points
(domain/drift.origins_along) as drift_origins reads them off its own."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from domain.catalog import Catalog
from domain.diff import Correction, Drift, corrections_for
from domain.drift import PastCorrection, Point, Target, observed_rows, origins_along, target_of
from domain.events import AccountEvent
from domain.fold import fold, read_by_truth
from domain.owners import NO_OVERRIDES, Owners
from domain.rules import Rules
from domain.state import TrueState
from domain.truth import decided_until, true_state


def points_back(folded: Sequence[AccountEvent], tables: Collection[str], catalog: Catalog, rules: Rules,
                at: datetime) -> Iterator[list[Point]]:
    """Each instant's points, from the last instant back to the first (`folded`: the events up to
    `at`, in fold order)."""
    instants = sorted({e.source_time for e in folded if read_by_truth(e) or f"{e.store}.{e.table}" in tables})
    for i in reversed(range(len(instants))):
        instant, end = instants[i], instants[i + 1] if i + 1 < len(instants) else at
        facts = fold(folded, as_of=instant, legacy=False)
        observed = observed_rows(folded, tables, [instant])[0]
        rows = {table: [found[k].row or {} for k in sorted(found)] for table, found in observed.items()}
        points = []
        when, crossing = instant, False
        while True:  # the event instant, then each threshold crossing before the next instant
            state = true_state(facts, catalog, rules, when, explain=False)
            points.append(Point(when, crossing, observed, state, drifting(state, rows, tables)))
            after = decided_until(state)
            if after is None or after >= end:
                break
            when, crossing = after, True
        if i + 1 == len(instants) and points[-1].at < end:  # and T itself
            state = true_state(facts, catalog, rules, end, explain=False)
            points.append(Point(end, True, observed, state, drifting(state, rows, tables)))
        yield points


def drifting(state: TrueState, rows: Mapping[str, Sequence[Mapping[str, Any]]],
             tables: Collection[str]) -> frozenset[Target]:
    """The targets of the corrections the state and rows call for, from the corrections themselves."""
    return frozenset(target_of(c) for c in corrections_for(state, rows, only=tables))


def drift_origins(corrections: Sequence[Correction], events: Iterable[AccountEvent], catalog: Catalog,
                  rules: Rules, at: datetime, *, owners: Owners = NO_OVERRIDES,
                  past: Sequence[PastCorrection] = ()) -> list[Drift]:
    if not corrections:
        return []
    folded = sorted((e for e in events if e.source_time <= at), key=lambda e: (e.source_time, e.originator_version))
    walk = points_back(folded, {c.table for c in corrections}, catalog, rules, at)
    return origins_along(walk, corrections, folded, at, owners=owners, past=past)
