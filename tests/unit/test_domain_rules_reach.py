"""A stage that can never apply is refused, naming the stage(s) that shadow it.

A stage applies when any of its conditions holds, earlier stages win, and a past-due account has
whole days_overdue >= 0 and failed_attempts >= 0. So below the earlier stages' smallest thresholds
D (days) and A (attempts) nothing earlier applies: a later stage is reachable exactly when one of
its thresholds is below the matching minimum while the other minimum is above 0 (the point
(threshold, 0) or (0, threshold) then reaches it), or it has no condition and D > 0 and A > 0.
A threshold of 0 holds for every past-due account, so it leaves the last stage nothing: such a stage
is written last, without conditions.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from domain.rules import STAGE_NAMES, Rules, RulesError, Stage, parse_rules
from tests.support.rules import RETRYING_ABOVE_SUSPENDED, refused


def a_file(*stages: tuple[str, int | None, int | None]) -> str:
    """A rules file with these (name, days_overdue_at_least, failed_attempts_at_least) stages."""
    text = 'version = "v9"\nbad_debt_days_overdue = 60\n'
    for name, days, attempts in stages:
        text += f'\n[[dunning.stage]]\nname = "{name}"\n'
        text += "" if days is None else f"days_overdue_at_least = {days}\n"
        text += "" if attempts is None else f"failed_attempts_at_least = {attempts}\n"
    return text


def test_retrying_at_3_days_above_suspended_at_21_days_is_refused_naming_retrying():
    assert refused(RETRYING_ABOVE_SUSPENDED) == (
        "rules file rules.toml: [[dunning.stage]] #2 'suspended': unreachable: stage #1 'retrying' "
        "(days_overdue_at_least = 3) applies whenever it would (days_overdue >= 21)")


UNREACHABLE = [
    pytest.param([("retrying", 3, None), ("suspended", 21, None), ("grace", None, None)],
                 "#2 'suspended': unreachable: stage #1 'retrying' (days_overdue_at_least = 3) applies whenever "
                 "it would (days_overdue >= 21)", id="a lower days threshold above"),
    pytest.param([("retrying", 3, 1), ("final_notice", 14, 4), ("grace", None, None)],
                 "#2 'final_notice': unreachable: stage #1 'retrying' (days_overdue_at_least = 3, "
                 "failed_attempts_at_least = 1) applies whenever it would (days_overdue >= 14 or "
                 "failed_attempts >= 4)", id="both conditions shadowed by one stage"),
    pytest.param([("suspended", 10, None), ("final_notice", None, 2), ("retrying", 12, 3), ("grace", None, None)],
                 "#3 'retrying': unreachable: stage #1 'suspended' (days_overdue_at_least = 10) and stage #2 "
                 "'final_notice' (failed_attempts_at_least = 2) apply whenever it would (days_overdue >= 12 or "
                 "failed_attempts >= 3)", id="shadowed by two stages together"),
    pytest.param([("suspended", 5, None), ("retrying", 5, None), ("grace", None, None)],
                 "#2 'retrying': unreachable: stage #1 'suspended' (days_overdue_at_least = 5) applies whenever "
                 "it would (days_overdue >= 5)", id="an equal threshold"),
    pytest.param([("suspended", 0, None), ("grace", None, None)],
                 "#2 'grace': unreachable: stage #1 'suspended' (days_overdue_at_least = 0) applies to every "
                 "past-due account", id="days >= 0 above the catch-all"),
    pytest.param([("suspended", 21, 0), ("retrying", 3, None), ("grace", None, None)],
                 "#2 'retrying': unreachable: stage #1 'suspended' (failed_attempts_at_least = 0) applies to every "
                 "past-due account", id="attempts >= 0 above a lower days threshold"),
    pytest.param([("suspended", None, 1), ("retrying", 0, None), ("final_notice", 7, None), ("grace", None, None)],
                 "#3 'final_notice': unreachable: stage #2 'retrying' (days_overdue_at_least = 0) applies to every "
                 "past-due account", id="days >= 0 in the middle"),
    pytest.param([("suspended", 14, None), ("final_notice", 0, 9), ("grace", None, None)],
                 "#3 'grace': unreachable: stage #2 'final_notice' (days_overdue_at_least = 0) applies to every "
                 "past-due account", id="a threshold of 0 leaves the catch-all nothing, wherever it is"),
]


@pytest.mark.parametrize(("stages", "says"), UNREACHABLE)
def test_an_unreachable_stage_is_refused_with_the_stages_that_shadow_it(stages, says):
    assert refused(a_file(*stages)) == f"rules file rules.toml: [[dunning.stage]] {says}"


REACHABLE = [
    pytest.param([("suspended", 21, None), ("final_notice", 14, 4), ("retrying", 3, 1), ("grace", None, None)],
                 id="rules v1"),
    pytest.param([("suspended", 21, None), ("retrying", 30, 1), ("grace", None, None)],
                 id="a higher days threshold, but a condition on attempts no stage above has"),
    pytest.param([("suspended", 1, 1), ("grace", None, None)],
                 id="the catch-all at 0 days and 0 attempts"),
]


@pytest.mark.parametrize("stages", REACHABLE)
def test_stages_that_can_each_apply_are_accepted(stages):
    assert len(parse_rules(a_file(*stages)).stages) == len(stages)


def test_rules_built_in_code_with_an_unreachable_stage_are_refused_too():
    with pytest.raises(ValidationError, match=r"stage #2 'suspended': unreachable: stage #1 'retrying'"):
        Rules(version="v9", bad_debt_days_overdue=60, stages=(
            Stage(name="retrying", days_overdue_at_least=3), Stage(name="suspended", days_overdue_at_least=21),
            Stage(name="grace")))


# --- the rule against brute force -------------------------------------------------------------

THRESHOLD = st.one_of(st.none(), st.integers(min_value=0, max_value=6))


@st.composite
def stage_lists(draw) -> list[tuple[str, int | None, int | None]]:
    """1-4 distinct stages: all but the last with some condition, the last with none."""
    names = draw(st.permutations(STAGE_NAMES))[:draw(st.integers(min_value=1, max_value=4))]
    stages = []
    for name in names[:-1]:
        days, attempts = draw(st.tuples(THRESHOLD, THRESHOLD).filter(lambda t: t != (None, None)))
        stages.append((name, days, attempts))
    return [*stages, (names[-1], None, None)]


def first_unreachable_by_brute_force(stages) -> int | None:
    """The 1-based number of the first stage that is the first to apply at no (days, attempts) of a
    grid one past every threshold (beyond it nothing changes), or None."""
    first_at = set()
    for days in range(8):
        for attempts in range(8):
            for number, (_, d, a) in enumerate(stages, start=1):
                if (d is None and a is None) or (d is not None and days >= d) or (a is not None and attempts >= a):
                    first_at.add(number)
                    break
    return next((n for n in range(1, len(stages) + 1) if n not in first_at), None)


@given(stage_lists())
def test_a_stage_is_refused_as_unreachable_exactly_when_no_point_reaches_it(stages):
    expected = first_unreachable_by_brute_force(stages)
    if expected is None:
        assert [s.name for s in parse_rules(a_file(*stages)).stages] == [name for name, _, _ in stages]
        return
    with pytest.raises(RulesError) as caught:
        parse_rules(a_file(*stages), source="rules.toml")
    assert f"[[dunning.stage]] #{expected} '{stages[expected - 1][0]}': unreachable: " in str(caught.value)
    with pytest.raises(ValidationError, match="unreachable"):
        Rules(version="v9", bad_debt_days_overdue=60,
              stages=tuple(Stage(name=n, days_overdue_at_least=d, failed_attempts_at_least=a) for n, d, a in stages))
