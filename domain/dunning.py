"""The dunning rules of rules-v1 §2 over a set of invoices, at an instant. Pure and cheap.

    standing(invoices, rules, t)        stage, bad_debt, days_overdue, failed_attempts at t
    next_action(invoices, rules, at)    the earliest t > at at which (stage, bad_debt) changes
    stage_since(history, rules, at)     when the current stage began
    StageSince(history, rules)          stage_since over that history's prefixes, each in constant time
                                          (domain/drift.py asks it at every instant of an account)

With no further event, the standing only moves at *crossings*: an open invoice falling due, or an
open invoice reaching `due_at + d days` for a days threshold d of the rules. Between crossings it
is constant. Conditions on days only apply while something is past due (U non-empty): a
threshold of 0 means "as soon as anything is past due", never "always".
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import accumulate
from typing import NamedTuple, Protocol

from domain.facts import DunningChange
from domain.rules import Rules, Stage

DAY = timedelta(days=1)
TICK = timedelta(microseconds=1)  # the resolution of datetime: "just before" an instant


class DunningInvoice(NamedTuple):
    invoice_id: str
    status: str
    due_at: datetime | None
    attempt_count: int


class Due(Protocol):
    """What the rules read of an invoice: a DunningInvoice, or the invoice's fact itself
    (domain/facts.InvoiceFact: the truth passes its facts' invoices as they are, not copies)."""

    @property
    def invoice_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def due_at(self) -> datetime | None: ...
    @property
    def attempt_count(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Standing:
    stage: str
    bad_debt: bool
    days_overdue: int
    failed_attempts: int
    past_due: tuple[Due, ...]  # U, oldest due_at first
    rule: Stage | None  # the stage rule that applied (None: stage none)
    held: tuple[str, ...]  # its conditions that held, e.g. "failed_attempts 4 >= 4"
    uncollectible: tuple[str, ...]  # invoices whose true status is uncollectible


def standing(invoices: Iterable[Due], rules: Rules, at: datetime) -> Standing:
    invoices = list(invoices)
    past_due = tuple(sorted(
        (i for i in invoices if i.status == "open" and i.due_at is not None and i.due_at <= at),
        key=lambda i: (i.due_at, i.invoice_id),
    ))
    uncollectible = tuple(sorted(i.invoice_id for i in invoices if i.status == "uncollectible"))
    if not past_due:
        return Standing("none", bool(uncollectible), 0, 0, (), None, (), uncollectible)
    days = (at - past_due[0].due_at) // DAY  # type: ignore[operator]
    attempts = sum(i.attempt_count for i in past_due)
    bad_debt = bool(uncollectible) or days >= rules.bad_debt_days_overdue
    for rule in rules.stages:
        held = []
        if rule.days_overdue_at_least is not None and days >= rule.days_overdue_at_least:
            held.append(f"days_overdue {days} >= {rule.days_overdue_at_least}")
        if rule.failed_attempts_at_least is not None and attempts >= rule.failed_attempts_at_least:
            held.append(f"failed_attempts {attempts} >= {rule.failed_attempts_at_least}")
        if held or rule.unconditional:
            return Standing(rule.name, bad_debt, days, attempts, past_due, rule, tuple(held), uncollectible)
    raise AssertionError("validated rules end with an unconditional stage")


def crossings(invoices: Iterable[Due], thresholds: tuple[int, ...]) -> list[tuple[datetime, str]]:
    """Every instant at which the standing may change with no further event, with why.

    `thresholds` are the rules' days thresholds (`Rules.day_thresholds`)."""
    points = []
    for invoice in invoices:
        if invoice.status != "open" or invoice.due_at is None:
            continue
        points.append((invoice.due_at, _why(invoice.invoice_id, None)))
        for days in thresholds:
            points.append((invoice.due_at + days * DAY, _why(invoice.invoice_id, days)))
    points.sort()
    return points


def _why(invoice_id: str, days: int | None) -> str:
    if days is None:
        return f"invoice {invoice_id} falls due"
    return f"invoice {invoice_id} reaches {days} days overdue"


class _Timeline:
    """(stage, bad_debt) of a fixed set of invoices at any instant, without building a `Standing`:
    the open invoices' due dates sorted once, with their running attempt counts, so an instant
    costs a bisection and the stage rules (the same decision as `standing`, which reads it whole)."""

    __slots__ = ("dues", "attempts", "uncollectible", "bad_debt_days", "stages")

    def __init__(self, invoices: Collection[Due], rules: Rules,
                 stages: tuple[tuple[str, int | None, int | None], ...]) -> None:
        due = sorted((i.due_at, i.attempt_count) for i in invoices if i.status == "open" and i.due_at is not None)
        self.dues = [d for d, _ in due]
        self.attempts = list(accumulate(a for _, a in due))
        self.uncollectible = any(i.status == "uncollectible" for i in invoices)
        self.bad_debt_days = rules.bad_debt_days_overdue
        self.stages = stages  # _stage_conditions(rules), once per call

    def at(self, t: datetime) -> tuple[str, bool]:
        past_due = bisect_right(self.dues, t)  # U: the open invoices with due_at <= t
        if not past_due:
            return "none", self.uncollectible
        days = (t - self.dues[0]) // DAY
        attempts = self.attempts[past_due - 1]
        bad_debt = self.uncollectible or days >= self.bad_debt_days
        for name, at_least_days, at_least_attempts in self.stages:
            if ((at_least_days is None and at_least_attempts is None)
                    or (at_least_days is not None and days >= at_least_days)
                    or (at_least_attempts is not None and attempts >= at_least_attempts)):
                return name, bad_debt
        raise AssertionError("validated rules end with an unconditional stage")


def _stage_conditions(rules: Rules) -> tuple[tuple[str, int | None, int | None], ...]:
    return tuple((s.name, s.days_overdue_at_least, s.failed_attempts_at_least) for s in rules.stages)


def next_action(invoices: Sequence[Due], rules: Rules, at: datetime) -> tuple[datetime | None, str]:
    found = _next_change(invoices, rules, at)
    if found is None:
        return None, _NO_ACTION
    t, now, then = found
    return t, f"{_first_why(invoices, rules.day_thresholds, t)}: {_change(now, then)}"


def next_action_at(invoices: Sequence[Due], rules: Rules, at: datetime) -> datetime | None:
    """`next_action`'s instant without its reason (the drift walk asks it at every instant)."""
    found = _next_change(invoices, rules, at)
    return None if found is None else found[0]


def _next_change(invoices: Sequence[Due], rules: Rules,
                 at: datetime) -> tuple[datetime, tuple[str, bool], tuple[str, bool]] | None:
    """The first instant after `at` at which (stage, bad_debt) changes, the pair at `at` and then."""
    if not any(i.status == "open" and i.due_at is not None for i in invoices):
        return None  # no crossing at all
    timeline = _Timeline(invoices, rules, _stage_conditions(rules))
    now = timeline.at(at)
    # The first of `crossings` after `at` at which the standing differs, without making them all:
    # with the invoices fixed, U changes only when an open invoice falls due and days_overdue
    # counts from the oldest of them (dues[0]), so the standing is constant between those instants
    # and dues[0] + a threshold; the other invoices' days crossings never change it.
    dues, thresholds = timeline.dues, rules.day_thresholds
    candidates = dues[bisect_right(dues, at):] + [t for t in (dues[0] + days * DAY for days in thresholds) if t > at]
    for t in sorted(candidates):
        then = timeline.at(t)
        if then != now:
            return t, now, then
    return None


def _first_why(invoices: Iterable[Due], thresholds: tuple[int, ...], t: datetime) -> str:
    """The first by text of the crossings at t (as `crossings` orders those of one instant)."""
    whys = []
    for invoice in invoices:
        if invoice.status != "open" or invoice.due_at is None or invoice.due_at > t:
            continue
        days, rest = divmod(t - invoice.due_at, DAY)
        if not rest and days == 0:
            whys.append(_why(invoice.invoice_id, None))
        if not rest and days in thresholds:
            whys.append(_why(invoice.invoice_id, days))
    return min(whys)


_NO_ACTION = "no open invoice can change the stage or bad_debt without a new event"


def _change(now: tuple[str, bool], then: tuple[str, bool]) -> str:
    parts = []
    if then[0] != now[0]:
        parts.append(f"stage {now[0]} -> {then[0]}")
    if then[1] != now[1]:
        parts.append(f"bad_debt {str(now[1]).lower()} -> {str(then[1]).lower()}")
    return ", ".join(parts)


def stage_since(history: Sequence[DunningChange], rules: Rules,
                at: datetime) -> tuple[datetime | None, str, list[str]]:
    """When the stage at `at` began, why, and the refs of the events that made it begin.

    It began either at a crossing ("invoice X reaches 3 days overdue", no refs) or at the instant
    of the events that changed the invoices (their refs).

    The history is cut into segments between changes; within a segment the invoices are fixed and
    the stage moves only at crossings, and only one way: U, days_overdue and failed_attempts only
    grow, so the set of stages whose conditions hold only grows and the first of them only moves
    up the list. A segment whose start and end have the target stage has it throughout. Walk back
    from `at` segment by segment to the last instant the stage differed (each segment's stage
    read off one `_Timeline`).
    `none` that never was anything else began at no instant: (None, "never in another stage", []).
    """
    segments = history_segments(history, at)
    stages = _stage_conditions(rules)
    target = _Timeline(segments[-1][1] if segments else [], rules, stages).at(at)[0]
    thresholds = rules.day_thresholds
    since: datetime | None = None
    why: tuple[str, list[str]] = ("", [])
    later = at  # where the segment after this one starts (or `at`)
    for index in range(len(segments) - 1, -1, -1):
        start, invoices, refs = segments[index]
        timeline = _Timeline(invoices, rules, stages)
        last = index == len(segments) - 1
        if not last and timeline.at(later - TICK)[0] != target:
            return since, *why  # the events at `later` changed the stage
        if timeline.at(start)[0] == target:
            since, why, later = start, ("the events at that instant", refs), start
            continue  # monotone: the target stage all through this segment
        for t, crossing in crossings(invoices, thresholds):
            if start < t and (t <= at if last else t < later) and timeline.at(t)[0] == target:
                return t, crossing, []
        return since, *why
    if target == "none":
        return None, "never in another stage", []
    return since, *why


Segment = tuple[datetime, list[DunningInvoice], list[str]]


def history_segments(history: Sequence[DunningChange], at: datetime) -> list[Segment]:
    """The history up to `at` cut where it changes: (start, the invoices from then on, the refs of
    the changes at start). The last segment's invoices are those at `at`."""
    segments: list[Segment] = []
    current: dict[str, DunningInvoice] = {}
    for change in history:
        if change.at > at:
            break
        if change.status is None:
            current.pop(change.invoice_id, None)
        else:
            current[change.invoice_id] = DunningInvoice(change.invoice_id, change.status, change.due_at,
                                                        change.attempt_count)
        if segments and segments[-1][0] == change.at:
            segments[-1] = (change.at, list(current.values()), segments[-1][2] + [change.ref])
        else:
            segments.append((change.at, list(current.values()), [change.ref]))
    return segments


class StageSince:
    """`stage_since` for the prefixes of one history: `since(prefix, at)` is exactly
    `stage_since(prefix, rules, at)`, in time independent of the history's length.

    The drift walk (domain/drift.py) asks it at every instant of an account, of the facts folded up
    to that instant: their history is a prefix of the whole one (the fold only appends to it) that
    ends where the changes of one instant end. stage_since walks back over the prefix's segments;
    past the last one, where the walk goes depends only on the segment it arrives at (the stage at
    that segment's start is the target), so what it finds from each segment back (`_began`) is
    found once, from the first segment forward. A history that is not such a prefix (its length not
    at the end of an instant, its last change another, changes after `at`, the whole history not in
    time order) is answered by `stage_since` itself; only the prefix's last change is compared."""

    __slots__ = ("rules", "_history", "_segments", "_ends", "_timelines", "_began", "_stages")

    def __init__(self, history: Sequence[DunningChange], rules: Rules) -> None:
        self.rules = rules
        self._history = tuple(history)
        ordered = all(a.at <= b.at for a, b in zip(self._history, self._history[1:], strict=False))
        self._segments = history_segments(self._history, self._history[-1].at) if ordered and history else []
        self._ends: dict[int, int] = {}  # a prefix's length -> its last segment: where an instant's changes end
        for n, change in enumerate(self._history if self._segments else (), 1):
            if n == len(self._history) or self._history[n].at != change.at:
                self._ends[n] = len(self._ends)
        self._stages = _stage_conditions(rules)
        self._timelines: dict[int, _Timeline] = {}
        self._began: list[tuple[datetime | None, str, list[str]]] = []

    def since(self, history: Sequence[DunningChange], at: datetime) -> tuple[datetime | None, str, list[str]]:
        index = self._ends.get(len(history))
        last = history[-1] if index is not None else None
        if (index is None or self._segments[index][0] > at
                or (last is not self._history[len(history) - 1] and last != self._history[len(history) - 1])):
            return stage_since(history, self.rules, at)
        start, invoices, _ = self._segments[index]
        timeline = self._timeline(index)
        target = timeline.at(at)[0]
        if timeline.at(start)[0] == target:
            since, why, refs = self._began_at(index)
            return since, why, list(refs)
        for t, crossing in crossings(invoices, self.rules.day_thresholds):
            if start < t <= at and timeline.at(t)[0] == target:
                return t, crossing, []
        return None, "", []

    def _timeline(self, index: int) -> _Timeline:
        timeline = self._timelines.get(index)
        if timeline is None:
            timeline = self._timelines[index] = _Timeline(self._segments[index][1], self.rules, self._stages)
        return timeline

    def _began_at(self, index: int) -> tuple[datetime | None, str, list[str]]:
        """When the stage that holds at the start of segment `index` began (stage_since's walk from
        there back), each segment's answer found once, the earlier ones first."""
        while len(self._began) <= index:
            self._began.append(self._walk_back_from(len(self._began)))
        return self._began[index]

    def _walk_back_from(self, index: int) -> tuple[datetime | None, str, list[str]]:
        start, _, refs = self._segments[index]
        target = self._timeline(index).at(start)[0]
        own: tuple[datetime | None, str, list[str]] = (start, "the events at that instant", refs)
        if index == 0:
            return (None, "never in another stage", []) if target == "none" else own
        before_start, before_invoices, _ = self._segments[index - 1]
        before = self._timeline(index - 1)
        if before.at(start - TICK)[0] != target:
            return own  # the events at `start` changed the stage
        if before.at(before_start)[0] == target:
            return self._began[index - 1]  # the target stage all through the segment before
        for t, crossing in crossings(before_invoices, self.rules.day_thresholds):
            if before_start < t < start and before.at(t)[0] == target:
                return t, crossing, []
        return own
