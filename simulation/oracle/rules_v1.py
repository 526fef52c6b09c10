"""An independent, deliberately small implementation of rules v1 §2 (`spec/rules-v1.md`).

The fleet generator uses it to know what every legacy column must hold, so that a fleet's manifest
can serve as an oracle for the projector. It shares no code with `domain/` on purpose: two
implementations written apart that agree are the test.

Receivables are the account's invoices whose *true* status is `open`; everything else about an
invoice (paid, void, uncollectible) enters only through `uncollectible`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DAY = timedelta(days=1)
BAD_DEBT_DAYS_OVERDUE = 60
# (stage, days_overdue_at_least, failed_attempts_at_least); first that applies wins; a stage
# applies when ANY of its conditions holds. `grace` (no condition) closes the list.
STAGE_RULES: tuple[tuple[str, int | None, int | None], ...] = (
    ("suspended", 21, None),
    ("final_notice", 14, 4),
    ("retrying", 3, 1),
    ("grace", None, None),
)
STAGES = ("none", "grace", "retrying", "final_notice", "suspended")
DELINQUENT_STAGES = frozenset({"retrying", "final_notice", "suspended"})
THRESHOLD_DAYS = tuple(sorted({d for _, d, _ in STAGE_RULES if d is not None} | {BAD_DEBT_DAYS_OVERDUE}))
StageRules = tuple[tuple[str, int | None, int | None], ...]


@dataclass(frozen=True)
class Thresholds:
    """Rules v1's shape with other numbers (a rules file of rules-v1 §4): the stages in order and the
    bad-debt days. The default is v1."""

    stages: StageRules
    bad_debt_days: int

    @property
    def days(self) -> tuple[int, ...]:
        return tuple(sorted({d for _, d, _ in self.stages if d is not None} | {self.bad_debt_days}))


def v1() -> Thresholds:
    """Rules v1, read from the module's constants when called (a test may patch them)."""
    return Thresholds(STAGE_RULES, BAD_DEBT_DAYS_OVERDUE)


@dataclass(frozen=True)
class Receivable:
    """An invoice whose true status is `open`: when it falls due and how often payment failed."""

    due_at: datetime | None
    attempt_count: int


@dataclass(frozen=True)
class Standing:
    stage: str
    days_overdue: int
    failed_attempts: int
    bad_debt: bool
    delinquent: bool
    next_action_at: datetime | None
    oldest_due_at: datetime | None


def _stage(days_overdue: int, failed_attempts: int, rules: Thresholds) -> str:
    for name, days_at_least, failed_at_least in rules.stages:
        if days_at_least is None and failed_at_least is None:
            return name
        if days_at_least is not None and days_overdue >= days_at_least:
            return name
        if failed_at_least is not None and failed_attempts >= failed_at_least:
            return name
    raise AssertionError("the last stage rule has no condition")


def _evaluate(receivables: Sequence[Receivable], uncollectible: bool, at: datetime, rules: Thresholds):
    past_due = [r for r in receivables if r.due_at is not None and r.due_at <= at]
    if not past_due:
        return "none", 0, 0, uncollectible, None
    oldest = min(r.due_at for r in past_due)  # type: ignore[type-var]
    days_overdue = (at - oldest) // DAY
    failed = sum(r.attempt_count for r in past_due)
    bad_debt = uncollectible or days_overdue >= rules.bad_debt_days
    return _stage(days_overdue, failed, rules), days_overdue, failed, bad_debt, oldest


def _candidates(receivables: Iterable[Receivable], at: datetime, rules: Thresholds) -> list[datetime]:
    found = set()
    for r in receivables:
        if r.due_at is None:
            continue
        for t in (r.due_at, *(r.due_at + d * DAY for d in rules.days)):
            if t > at:
                found.add(t)
    return sorted(found)


def standing(
    receivables: Sequence[Receivable], *, uncollectible: bool = False, at: datetime | None = None,
    rules: Thresholds | None = None,
) -> Standing:
    """The dunning side of the true state at `at` (default: now, UTC), under `rules` (default v1)."""
    at = at if at is not None else datetime.now(UTC)
    rules = rules or v1()
    stage, days, failed, bad_debt, oldest = _evaluate(receivables, uncollectible, at, rules)
    next_action_at = None
    for t in _candidates(receivables, at, rules):
        later_stage, _, _, later_bad_debt, _ = _evaluate(receivables, uncollectible, t, rules)
        if (later_stage, later_bad_debt) != (stage, bad_debt):
            next_action_at = t
            break
    return Standing(
        stage=stage,
        days_overdue=days,
        failed_attempts=failed,
        bad_debt=bad_debt,
        delinquent=stage in DELINQUENT_STAGES,
        next_action_at=next_action_at,
        oldest_due_at=oldest,
    )


def account_status(*, closed: bool, stage: str) -> str:
    if closed:
        return "closed"
    return "suspended" if stage == "suspended" else "active"


def entitlement_enabled(
    feature: str, *, status: str, plan_features: frozenset[str], free_features: frozenset[str]
) -> bool:
    """True value of a non-manual entitlement."""
    if status == "active":
        return feature in plan_features
    if status == "suspended":
        return feature in free_features
    return False
