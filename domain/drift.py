"""Where each correction's drift came from: cause, since, owner, by, rewrites (cli.md). Pure.

    drift_origins(corrections, events, catalog, rules, at, owners=..., past=...) -> list[Drift]

The account's log holds every observed version of its legacy rows (with their times) and every
event the truth reads, so the drift of a (table, row, column) can be replayed: at an instant t it
drifts exactly when `corrections_for(true_state at t, the rows as observed at t)` proposes the
same correction. Between two instants where an event happened or a threshold was crossed (an
invoice falling due, days_overdue reaching a rule's number: `decided_until`), nothing that decides
it changes. So the walk goes back from T over those instants (only the events the truth reads and
the observations of the tables being corrected), and the current drift began at the earliest
instant s of the unbroken stretch ending at T; what happened at s says why:

    wrong_write           a write to the row at s changed the column to a value the truth at s did
                          not have (a write and a truth change at the same instant: the write is
                          judged against the truth after the change, so the write is the cause)
    overwrote_correction  the same, after the projector had corrected that column (`past`)
    missed_change         the truth changed at s (an event, or a threshold crossing:
                          `rule:<stage or field>@<instant>`) and the row did not follow
    missing               the row should exist and does not: since the truth called for it, or
                          since it was deleted

When the drift reaches back to the first instant the log knows of the row or the account (history
starts after the drift), `since` is the row's first observation: the earliest instant the log can
vouch for. `rewrites` counts the earlier corrections of the same column (from the audit, `past`)
that a later observed write set to something else. Only the drifting accounts pay for this.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.catalog import Catalog
from domain.diff import Cause, Correction, Drift, Target, read_by, same, sections_of, target, targets_for
from domain.dunning import StageSince
from domain.events import AccountEvent, LegacyRowObserved
from domain.facts import AccountFacts, row_key
from domain.fold import Folding, read_by_truth
from domain.legacy_tables import COMPARED_BY_STORE
from domain.owners import NO_OVERRIDES, Owners
from domain.refs import ref_of
from domain.rules import Rules
from domain.state import TrueState
from domain.truth import Along, facts_read, read_state


@dataclass(frozen=True)
class PastCorrection:
    """A correction the projector applied earlier (the audit), and when it was applied."""

    table: str
    op: str
    key: Mapping[str, Any] | None
    column: str | None
    to: Any
    at: datetime

    @property
    def target(self) -> Target:
        return target(self.table, self.op, self.key, self.column)


def target_of(c: Correction) -> Target:
    return target(c.table, c.op, c.key, c.column)


def recorded_rows(facts: AccountFacts) -> dict[str, list[dict[str, Any]]]:
    """The compared legacy tables' rows of the account as last recorded, by "store.table"."""
    return {f"{store}.{table}": [row.row for row in facts.rows(store, table)]
            for store, tables in COMPARED_BY_STORE.items() for table in tables}


START_INSTANTS = 16  # at most so many instants go on from a walk's `start` (a chunk's facts are made at once)

Observed = dict[str, dict[str, LegacyRowObserved]]  # "store.table" -> row key -> its latest observation


@dataclass(frozen=True)
class Point:
    """One instant of the walk: the corrected tables' rows and the state there, and the corrections they call for."""

    at: datetime
    crossing: bool  # a threshold crossing, not an event instant
    rows: Observed
    state: TrueState  # only what the diff of the corrected tables reads, and truth.ALWAYS_READ (truth.read_state)
    drifting: frozenset[Target]


def with_drift(corrections: Sequence[Correction], drifts: Sequence[Drift]) -> list[Correction]:
    return [c.model_copy(update={"drift": d}) for c, d in zip(corrections, drifts, strict=True)]


def open_drift(corrections: Iterable[Correction]) -> dict[str, dict[str, int]]:
    """Corrections by owner and cause ({owner: {cause: n}}, both sorted), of those whose drift is said."""
    counts: dict[str, dict[str, int]] = {}
    for c in corrections:
        if c.drift is not None:
            mine = counts.setdefault(c.drift.owner, {})
            mine[c.drift.cause] = mine.get(c.drift.cause, 0) + 1
    return {owner: dict(sorted(causes.items())) for owner, causes in sorted(counts.items())}


def drift_origins(corrections: Sequence[Correction], events: Iterable[AccountEvent], catalog: Catalog,
                  rules: Rules, at: datetime, *, owners: Owners = NO_OVERRIDES,
                  past: Sequence[PastCorrection] = (), start: Folding | None = None) -> list[Drift]:
    """Each correction's drift origin (in the corrections' order), from the account's events
    (all of them: the legacy rows' observations too), the rules and T; `past`: the account's
    applied corrections from the audit; `start`: a fold (legacy=False) of the same events, part
    way, that the walk may go on from (`_chunk_folds`; it is advanced)."""
    if not corrections:
        return []
    folded = sorted((e for e in events if e.source_time <= at), key=lambda e: (e.source_time, e.originator_version))
    looking = {c.table for c in corrections}
    walk = points_back(folded, set(looking), catalog, rules, at, start=start, looking=looking)
    return origins_along(walk, corrections, folded, at, owners=owners, past=past, looking=looking)


def origins_along(walk: Iterable[Sequence[Point]], corrections: Sequence[Correction], folded: Sequence[AccountEvent],
                  at: datetime, *, owners: Owners = NO_OVERRIDES, past: Sequence[PastCorrection] = (),
                  looking: set[str] | None = None) -> list[Drift]:
    """`drift_origins` from the walk's points (`points_back` over the corrections' tables), read
    until every correction's drift has begun. `looking`: the walk's (points_back), left holding
    after each segment the tables of the corrections whose drift has not begun yet."""
    tables = {c.table for c in corrections}
    wanted = {target_of(c) for c in corrections}
    starts: dict[Target, tuple[Point, Point | None]] = {}
    later: Point | None = None  # the point after the one being looked at, in time
    open_ = set(wanted)
    value_at_t: dict[Target, Any] = {}
    for segment in walk:
        for point in reversed(segment):
            if later is None:
                value_at_t = {t: _value(point.rows, t) for t in wanted}
            # the rows the point after had (one Observed while none was observed again: observed_rows)
            # hold what they held there, T's value for every target still open
            rows_moved = later is None or point.rows is not later.rows
            for t in [t for t in open_ if t not in point.drifting or (
                    rows_moved and not _same_value(_value(point.rows, t), value_at_t[t]))]:
                if later is not None:
                    starts[t] = (later, point)
                open_.discard(t)
            later = point
        if not open_:
            break
        if looking is not None:
            looking.intersection_update({t[0] for t in open_})
    for t in open_:  # drifting since the first instant the log knows
        if later is not None:
            starts[t] = (later, None)
    at_end = observed_rows(folded, tables, [at])[0]
    looked = _Looked(folded, past)
    return [_origin(c, starts.get(target_of(c)), looked, at_end, owners, at) for c in corrections]


def observed_rows(folded: Sequence[AccountEvent], tables: Collection[str],
                  instants: Sequence[datetime]) -> list[Observed]:
    """The latest observation of each row of `tables` (a row seen gone is not there) as of each of
    `instants` (ascending), in one pass over `folded` (in fold order)."""
    rows: Observed = {table: {} for table in tables}
    found: list[Observed] = []
    index = 0
    for instant in instants:
        changed = not found
        while index < len(folded) and folded[index].source_time <= instant:
            e = folded[index]
            index += 1
            mine = rows.get(f"{e.store}.{e.table}") if isinstance(e, LegacyRowObserved) else None
            if mine is not None:
                changed = True
                if e.row is None:  # type: ignore[attr-defined]
                    mine.pop(row_key(e.key), None)
                else:
                    mine[row_key(e.key)] = e  # type: ignore[assignment]
        # an instant where no row of `tables` was observed shares the instant before's (the walk
        # diffs again only when its rows or the state moved: `_Drifting`)
        found.append({table: dict(mine) for table, mine in rows.items()} if changed else found[-1])
    return found


def points_back(folded: Sequence[AccountEvent], tables: Collection[str], catalog: Catalog, rules: Rules,
                at: datetime, *, start: Folding | None = None, looking: Collection[str] | None = None,
                ) -> Iterator[list[Point]]:
    """The walk's points, a segment (`_segment`) per instant, from the last instant back to the first:
    the instants are those of the events the truth reads and of the observations of `tables`
    (`folded`: the account's events up to `at`, in fold order).

    Nothing is computed again from the first event at each instant. The facts (domain/fold.Folding)
    and the rows of `tables` (`observed_rows`) are carried forward in chunks that double in length
    going back (the last 4 instants, the 8 before them, ...): one fold goes forward once and is
    forked where each chunk starts (`_chunk_folds`), so each event is evolved at most twice; an
    instant decides only the state's fields the diff reads (truth.read_state, from the facts it
    reads: truth.facts_read), carrying what the instants before made (truth.Along: `stage_since`
    along the whole history, domain/dunning.StageSince, the facts at each instant holding a prefix
    of it; the entitlements while what they read stands); the diff runs again only when what it reads moved
    (`_Drifting`); a segment's states are decided only when the walk reaches it. An instant costs
    what the account's state holds (its invoices, its rows), not its history. `start`: a fold of
    the same events part way (a follower's fold as of its last step), which the last instants it
    reaches go on from (`_chunk_folds`). `looking`: some of `tables`, a set the caller may shrink
    between segments (origins_along: as the corrections' drifts are found); each segment's points
    are then decided for the parts of the diff of those tables alone (their `drifting` holds
    those parts' targets; the state, what they read: read_state)."""
    instants = sorted({e.source_time for e in folded if read_by_truth(e) or f"{e.store}.{e.table}" in tables})
    along: Along | None = None
    drifts = _Drifting(tables)
    for lo, hi, folding in _chunk_folds(folded, instants, start):
        reads = facts_read(drifts.reads)  # what read_state reads of the facts (narrowing only drops some)
        facts = [folding.facts_at(instant, only=reads) for instant in instants[lo:hi - 1]]
        facts.append(folding.facts_at(instants[hi - 1], only=reads if along else reads | {"dunning_history"}))
        observed = observed_rows(folded, tables, instants[lo:hi])
        if along is None:  # the first chunk ends at the last instant: its facts hold the whole history
            along = Along(StageSince(facts[-1].dunning_history, rules))
        for i in reversed(range(lo, hi)):
            if looking is not None:
                drifts.narrow(looking)
            yield _segment(facts[i - lo], observed[i - lo], along, drifts, catalog, rules, instants[i],
                           instants[i + 1] if i + 1 < len(instants) else at, include_end=i + 1 == len(instants))


def _chunk_folds(folded: Sequence[AccountEvent], instants: Sequence[datetime],
                 start: Folding | None = None) -> Iterator[tuple[int, int, Folding]]:
    """The walk's chunks [lo, hi) of `instants`, the last first (the last 4 instants, the 8 before
    them, ...), each with a fold of the events before its first instant. One fold goes forward
    once, forked where each chunk starts: each event is evolved at most twice (once to get there,
    once in its own chunk), not once per chunk after it. With `start`, the last instants it
    reaches (Folding.reaches; at most START_INSTANTS) are the first chunk, folded on from it: a
    follower's walk, which mostly ends among the instants since its last step, then evolves only
    what came since; the chunks before them are made as above only if the walk goes on."""
    top = len(instants)
    if start is not None:
        lo = top
        while lo > 0 and top - lo < START_INSTANTS and start.reaches(instants[lo - 1]):
            lo -= 1
        if lo < top:
            yield lo, top, start
            top = lo
    if not top:
        return
    bounds, hi, size = [], top, 4
    while hi > 0:
        bounds.append((max(0, hi - size), hi))
        hi, size = bounds[-1][0], size * 2
    folding, starts = Folding(folded, legacy=False), {}
    for lo, _ in reversed(bounds[1:]):
        if lo > 0:
            folding.advance(instants[lo - 1])
        starts[lo] = folding.fork()
    for lo, hi in bounds:
        yield lo, hi, starts.pop(lo, folding)


def _segment(facts: AccountFacts, observed: Observed, along: Along, drifts: _Drifting, catalog: Catalog,
             rules: Rules, instant: datetime, end: datetime, *, include_end: bool) -> list[Point]:
    """The points from `instant` (an event instant; `facts`: the fold at it, `observed`: the rows of
    the corrected tables at it) up to `end` (excluded, but for T itself): the event instant and
    every threshold crossing after it, in time order. The truth's fold leaves the observed rows out
    (fold(legacy=False)): the corrected tables' rows come apart."""
    points = []
    when, crossing = instant, False
    while True:
        state, after = read_state(facts, catalog, rules, when, drifts.reads, along=along)
        points.append(Point(when, crossing, observed, state, drifts.at(state, observed)))
        if after is None or after >= end:
            break
        when, crossing = after, True
    if include_end and points[-1].at < end:
        state, _ = read_state(facts, catalog, rules, end, drifts.reads, along=along)
        points.append(Point(end, True, observed, state, drifts.at(state, observed)))
    return points


class _Drifting:
    """The targets drifting at the walk's points (those of the corrections the state and rows call
    for), each part of the diff (domain/diff.SECTIONS) run again only when what it reads moved
    since the point before: the rows of `tables` (one `Observed` while none of them was observed
    again: `observed_rows`) or its fields of the state (diff.read_by). Along an account whose
    truth moves at every instant, most parts find what they found before."""

    __slots__ = ("_sections", "reads", "_observed", "_rows", "_kept", "_found")

    def __init__(self, tables: Collection[str]) -> None:
        self._sections = sections_of(tables)
        self.reads = frozenset(name for section in self._sections for name in section.reads)  # of the state
        self._observed: Observed | None = None
        self._rows: dict[str, list[dict[str, Any]]] = {}
        self._kept: list[tuple[tuple[Any, ...], frozenset[Target]] | None] = []
        self._found: frozenset[Target] = frozenset()

    def narrow(self, tables: Collection[str]) -> None:
        """The parts of the diff of `tables` alone from now on (when fewer than before)."""
        sections = sections_of(tables)
        if len(sections) < len(self._sections):
            self._sections, self._kept = sections, [None] * len(sections)
            self.reads = frozenset(name for section in sections for name in section.reads)

    def at(self, state: TrueState, observed: Observed) -> frozenset[Target]:
        if observed is not self._observed:
            self._observed, self._kept = observed, [None] * len(self._sections)
            self._rows = {table: [found[k].row or {} for k in sorted(found)] for table, found in observed.items()}
        moved = False
        for n, section in enumerate(self._sections):
            read, kept = read_by(section, state), self._kept[n]
            if kept is None or kept[0] != read:
                self._kept[n], moved = (read, targets_for(state, self._rows, only=section.tables)), True
        if moved:
            self._found = frozenset().union(*(found for _, found in filter(None, self._kept)))
        return self._found


def _value(rows: Observed, target: Target) -> Any:
    """What the row holds of the target: the column's value (an update), whether the row is there."""
    table, op, key, column = target
    row = _row(rows, table, key)
    if op == "update":
        return _ABSENT if row is None else _column(row, column)
    return row is not None


_ABSENT = object()


def _column(observed: LegacyRowObserved, column: str | None) -> Any:
    return (observed.row or {}).get(column or "")


def _same_value(a: Any, b: Any) -> bool:
    return a is b if _ABSENT in (a, b) else same(a, b)


def _row(observed: Observed, table: str, key: str | None) -> LegacyRowObserved | None:
    rows = observed.get(table, {})
    if key is None:  # a subs_customer row to insert: any row of the account
        return next(iter(rows.values()), None)
    return rows.get(key)


def _origin(c: Correction, start: tuple[Point, Point | None] | None, looked: _Looked, at_end: Observed,
            owners: Owners, at: datetime) -> Drift:
    target = target_of(c)
    _, op, key, column = target
    current = _row(at_end, c.table, key)
    owner = owners.owner(c.table, column, current.row if current is not None else None)
    rewrites = _rewrites(target, looked, at)
    if start is None:  # the log's rows do not drift at T: the live row changed after the last observation
        return Drift(cause="wrong_write", since=current.source_time if current else at, owner=owner,
                     by=ref_of(current) if current else f"unobserved:{c.table}[{key}]", rewrites=rewrites)
    s, before = start
    at_s = looked.at(s.at) if not s.crossing else []
    row_events = [e for e in at_s if f"{e.store}.{e.table}" == c.table and (key is None or row_key(e.key) == key)]
    row_s = _row(s.rows, c.table, key)
    row_b = _row(before.rows, c.table, key) if before is not None else None
    truth_by = _truth_by(s, before, at_s, column)
    drift = _Found(s.at, owner, rewrites)
    if op == "insert":
        if row_b is not None and row_s is None and row_events:
            return drift.of("missing", ref_of(row_events[-1]))
        return drift.of("missing", truth_by)
    wrote = bool(row_events) and row_s is not None and (
        row_b is None or op == "delete" or not same(_column(row_b, column), _column(row_s, column)))
    if wrote:
        overwrote = op == "update" and any(p.at <= s.at for p in looked.past.get(target, ()))
        return drift.of("overwrote_correction" if overwrote else "wrong_write", ref_of(row_events[-1]))
    if before is None or not before.state.account_exists or row_b is None:
        # the row was already wrong when the log first knew both it and the account
        first = row_s or current
        if first is not None:
            return Drift(cause="wrong_write", since=min(first.source_time, s.at), owner=owner, by=ref_of(first),
                         rewrites=rewrites)
    return drift.of("missed_change", truth_by)


@dataclass(frozen=True)
class _Found:
    since: datetime
    owner: str
    rewrites: int

    def of(self, cause: Cause, by: str) -> Drift:
        return Drift(cause=cause, since=self.since, owner=self.owner, by=by, rewrites=self.rewrites)


def _truth_by(s: Point, before: Point | None, at_s: Sequence[AccountEvent], column: str | None) -> str:
    """What changed the truth at s: the last event there the truth reads, or the rule crossed."""
    truth = [e for e in at_s if read_by_truth(e)]
    if truth:
        return ref_of(truth[-1])
    stage_moved = before is None or before.state.stage != s.state.stage
    name = s.state.stage if stage_moved or column is None else column
    if not s.crossing and at_s:
        return ref_of(at_s[-1])
    return f"rule:{name}@{s.at.isoformat()}"


def _rewrites(target: Target, looked: _Looked, at: datetime) -> int:
    """The earlier corrections of the target that a later observed write undid (before T): for each,
    the row's observations after it, up to the first that undoes it."""
    table, op, key, column = target
    mine = [p for p in looked.past.get(target, ()) if p.at <= at]
    if not mine:
        return 0
    row, times = looked.row(table, key)
    count = 0
    for p in mine:
        for i in range(bisect_right(times, p.at), len(row)):
            e = row[i]
            if op == "update" and e.row is not None and not same(e.row.get(column or ""), p.to):
                count += 1
                break
            if op == "insert" and e.row is None:
                count += 1
                break
    return count


class _Looked:
    """What `_origin` looks up in an account's events (in fold order) and its applied corrections,
    indexed once for all its corrections (not the stream scanned again for each: that grew with the
    square of a follower's run, an account corrected every few seconds): the events at an instant,
    a row's observations (each table's, on first asking), the applied corrections by target."""

    __slots__ = ("_folded", "_times", "_rows", "past")

    def __init__(self, folded: Sequence[AccountEvent], past: Sequence[PastCorrection]) -> None:
        self._folded = folded
        self._times = [e.source_time for e in folded]
        self._rows: dict[str, dict[str | None, tuple[list[LegacyRowObserved], list[datetime]]]] = {}
        self.past: dict[Target, list[PastCorrection]] = {}
        for p in past:
            self.past.setdefault(p.target, []).append(p)

    def at(self, instant: datetime) -> Sequence[AccountEvent]:
        """The events at `instant`, in fold order."""
        return self._folded[bisect_left(self._times, instant):bisect_right(self._times, instant)]

    def row(self, table: str, key: str | None) -> tuple[list[LegacyRowObserved], list[datetime]]:
        """The observations of the row of `table` with `key` (None: of every row of it), in fold
        order, and their times."""
        rows = self._rows.get(table)
        if rows is None:
            rows = self._rows[table] = {}
            for e in self._folded:
                if isinstance(e, LegacyRowObserved) and f"{e.store}.{e.table}" == table:
                    for k in (None, row_key(e.key)):
                        found = rows.setdefault(k, ([], []))
                        found[0].append(e)
                        found[1].append(e.source_time)
        return rows.get(key, ([], []))
