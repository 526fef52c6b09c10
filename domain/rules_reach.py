"""Which dunning stages can apply at all (rules-v1 §4). Pure.

    shadowed(earlier, stage) -> str | None    why `stage` can never apply below `earlier`, or None
    first_unreachable(stages) -> (number, why) | None

A stage applies when any of its conditions holds and the first that applies wins. A past-due
account's days_overdue and failed_attempts are any whole numbers >= 0, independently. Let D and A
be the smallest days and attempts thresholds of the stages above (none: infinity): no stage above
applies exactly at the points with days < D and attempts < A, so

  - D = 0 or A = 0: a stage above applies to every past-due account, nothing below it can apply;
  - otherwise a stage without conditions applies at (0, 0), below everything above it; a condition
    days >= d reaches (d, 0) when d < D, attempts >= a reaches (0, a) when a < A. A stage all of
    whose conditions have d >= D and a >= A never applies first: wherever it would, the first stage
    above with a threshold at most its own already does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from domain.rules import Stage

CONDITIONS = (("days_overdue_at_least", "days_overdue"), ("failed_attempts_at_least", "failed_attempts"))


def shadowed(earlier: Sequence[Stage], stage: Stage) -> str | None:
    numbered = list(enumerate(earlier, start=1))
    for number, above in numbered:
        for key, _ in CONDITIONS:
            if getattr(above, key) == 0:
                return f"{_named(number, above, [key])} applies to every past-due account"
    shadows: dict[int, list[str]] = {}  # number of a stage above -> its conditions that cover this one's
    conditions = []
    for key, measure in CONDITIONS:
        threshold = getattr(stage, key)
        if threshold is None:
            continue
        cover = next((n for n, above in numbered if getattr(above, key) is not None and getattr(above, key) <= threshold),
                     None)
        if cover is None:
            return None
        shadows.setdefault(cover, []).append(key)
        conditions.append(f"{measure} >= {threshold}")
    if not conditions:
        return None
    named = [_named(number, earlier[number - 1], keys) for number, keys in sorted(shadows.items())]
    return (f"{' and '.join(named)} {'applies' if len(named) == 1 else 'apply'} whenever it would "
            f"({' or '.join(conditions)})")


def first_unreachable(stages: Sequence[Stage]) -> tuple[int, str] | None:
    """The 1-based number of the first stage that can never apply, with why."""
    for index, stage in enumerate(stages):
        why = shadowed(stages[:index], stage)
        if why:
            return index + 1, why
    return None


def _named(number: int, stage: Stage, keys: Sequence[str]) -> str:
    return f"stage #{number} '{stage.name}' ({', '.join(f'{key} = {getattr(stage, key)}' for key in keys)})"
