"""The dunning functions as they were before `_Timeline` (domain/dunning.py): the brute-force oracle
the faster ones are compared against (tests/unit/test_domain_dunning_timeline.py,
scripts/bench_truth.py). Each instant asks `standing` afresh."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from domain.dunning import TICK, DunningInvoice, Standing, crossings, history_segments, standing
from domain.facts import DunningChange
from domain.rules import Rules


def next_action(invoices: Sequence[DunningInvoice], rules: Rules, at: datetime) -> tuple[datetime | None, str]:
    now = standing(invoices, rules, at)
    for t, why in crossings(invoices, rules.day_thresholds):
        if t > at:
            then = standing(invoices, rules, t)
            if (then.stage, then.bad_debt) != (now.stage, now.bad_debt):
                return t, f"{why}: {_change(now, then)}"
    return None, "no open invoice can change the stage or bad_debt without a new event"


def _change(now: Standing, then: Standing) -> str:
    parts = []
    if then.stage != now.stage:
        parts.append(f"stage {now.stage} -> {then.stage}")
    if then.bad_debt != now.bad_debt:
        parts.append(f"bad_debt {str(now.bad_debt).lower()} -> {str(then.bad_debt).lower()}")
    return ", ".join(parts)


def stage_since(history: Sequence[DunningChange], rules: Rules,
                at: datetime) -> tuple[datetime | None, str, list[str]]:
    """domain/dunning.stage_since as it was: `standing` asked afresh at each instant of the walk back."""
    segments = history_segments(history, at)
    target = standing(segments[-1][1] if segments else [], rules, at).stage
    thresholds = rules.day_thresholds
    since: datetime | None = None
    why: tuple[str, list[str]] = ("", [])
    later = at  # where the segment after this one starts (or `at`)
    for index in range(len(segments) - 1, -1, -1):
        start, invoices, refs = segments[index]
        last = index == len(segments) - 1
        if not last and standing(invoices, rules, later - TICK).stage != target:
            return since, *why  # the events at `later` changed the stage
        if standing(invoices, rules, start).stage == target:
            since, why, later = start, ("the events at that instant", refs), start
            continue  # monotone: the target stage all through this segment
        for t, crossing in crossings(invoices, thresholds):
            if start < t and (t <= at if last else t < later) and standing(invoices, rules, t).stage == target:
                return t, crossing, []
        return since, *why
    if target == "none":
        return None, "never in another stage", []
    return since, *why
