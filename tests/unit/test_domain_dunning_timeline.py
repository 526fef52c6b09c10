"""`next_action` and `stage_since` read each instant off one `_Timeline` per set of invoices; they say
exactly what asking `standing` afresh at every instant says (tests/support/dunning_oracle.py, the
implementation before), for any invoices, any history of changes, any valid rules and any instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from domain.dunning import DunningInvoice, StageSince, next_action, stage_since
from domain.facts import DunningChange
from domain.rules import RULES_V1, STAGE_NAMES, Rules, Stage
from tests.support import dunning_oracle

START = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)

instants = st.integers(min_value=0, max_value=24 * 90).map(lambda hours: START + hours * HOUR)
statuses = st.sampled_from(["open", "open", "paid", "void", "uncollectible"])
invoice_ids = st.sampled_from(["inv_a", "inv_b", "inv_c", "inv_d"])


def some_rules() -> st.SearchStrategy[Rules]:
    stage = st.tuples(st.sampled_from(STAGE_NAMES), st.none() | st.integers(0, 30), st.none() | st.integers(0, 6))

    def build(stages: list[tuple[str, int | None, int | None]], bad_debt: int) -> Rules | None:
        named = [Stage(name=n, days_overdue_at_least=d, failed_attempts_at_least=a) for n, d, a in stages]
        last = next(n for n in STAGE_NAMES if n not in {s.name for s in named[:-1]}) if named else "grace"
        try:
            return Rules(version="v9", bad_debt_days_overdue=bad_debt, stages=(*named[:-1], Stage(name=last)))
        except ValidationError:
            return None
    built = st.builds(build, st.lists(stage, min_size=1, max_size=4, unique_by=lambda s: s[0]), st.integers(0, 70))
    return st.just(RULES_V1) | built.filter(lambda r: r is not None)


invoices = st.lists(st.builds(DunningInvoice, invoice_ids, statuses, st.none() | instants, st.integers(0, 6)),
                    max_size=4, unique_by=lambda i: i.invoice_id)


@st.composite
def histories(draw: st.DrawFn) -> tuple[DunningChange, ...]:
    times = sorted(draw(st.lists(instants, max_size=8)))
    changes = []
    for n, at in enumerate(times):
        status = draw(st.none() | statuses)
        changes.append(DunningChange(at=at, invoice_id=draw(invoice_ids), status=status,
                                     due_at=draw(st.none() | instants), attempt_count=draw(st.integers(0, 6)),
                                     ref=f"evt_{n}"))
    return tuple(changes)


@settings(max_examples=400, deadline=None)
@given(invoices, some_rules(), instants)
def test_next_action_is_what_asking_standing_at_every_crossing_says(views, rules, at):
    assert next_action(views, rules, at) == dunning_oracle.next_action(views, rules, at)


@settings(max_examples=400, deadline=None)
@given(histories(), some_rules(), instants)
def test_stage_since_is_what_asking_standing_at_every_instant_says(history, rules, at):
    assume(rules is not None)
    assert stage_since(history, rules, at) == dunning_oracle.stage_since(history, rules, at)


@settings(max_examples=400, deadline=None)
@given(histories(), some_rules(), st.lists(instants, min_size=1, max_size=4))
def test_stage_since_along_a_history_says_at_each_prefix_what_stage_since_says(history, rules, ats):
    assume(rules is not None)
    along = StageSince(history, rules)
    for n in range(len(history) + 1):
        prefix = history[:n]
        for at in [*ats, *(change.at for change in prefix[-1:])]:
            assert along.since(prefix, at) == stage_since(prefix, rules, at)
