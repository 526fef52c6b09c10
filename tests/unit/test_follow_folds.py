"""The follower's kept folds: each step's facts are those of a fold of the whole stream, whether the
kept fold went on or had to start again."""

from __future__ import annotations

from freezegun import freeze_time

from domain.fold import fold
from projections.follow.folds import KeptFolds
from tests.support.builders import ACCOUNT, DAY, T0, an_account, due_in, now, paid, past_due


def a_stream():
    """An account's events in version order, as the StreamCache gives them (their times out of order)."""
    return sorted(an_account(invoices=(past_due(days=16, attempts=2), due_in(days=3), paid()), manual=("sso",)),
                  key=lambda e: e.originator_version)


@freeze_time(T0)
def test_a_stream_growing_step_by_step_gives_each_step_what_a_fold_of_it_gives():
    stream, folds = a_stream(), KeptFolds()
    for n in range(1, len(stream) + 1):
        facts, count, head = folds.stream(ACCOUNT, stream[:n]).fold_at(now())
        assert facts == fold(stream[:n], as_of=now(), legacy=False)
        assert (count, head) == (n, stream[n - 1].originator_version)
    assert folds.folded_again < len(stream)  # some steps went on from the fold kept


@freeze_time(T0)
def test_events_that_sort_after_what_was_folded_are_only_added():
    stream = sorted(a_stream(), key=lambda e: e.source_time)
    stream = [e.model_copy(update={"originator_version": v}) for v, e in enumerate(stream, 1)]
    folds = KeptFolds()
    for n in range(1, len(stream) + 1):
        assert folds.facts(ACCOUNT, stream[:n], now()) == fold(stream[:n], as_of=now(), legacy=False)
    assert folds.folded_again == 1


@freeze_time(T0)
def test_a_clock_set_back_before_an_event_folded_or_another_stream_under_the_same_id_folds_again():
    stream, folds = a_stream(), KeptFolds()
    last = max(e.source_time for e in stream)
    folds.facts(ACCOUNT, stream, now())
    assert folds.facts(ACCOUNT, stream, last) == fold(stream, as_of=last, legacy=False)  # goes on
    assert folds.facts(ACCOUNT, stream, last - DAY) == fold(stream, as_of=last - DAY, legacy=False)
    other = sorted(an_account(invoice=past_due(days=2)), key=lambda e: e.originator_version)
    assert folds.facts(ACCOUNT, other, now()) == fold(other, as_of=now(), legacy=False)
    assert folds.folded_again == 3


@freeze_time(T0)
def test_past_its_events_the_folds_used_longest_ago_are_forgotten():
    stream = a_stream()
    folds = KeptFolds(max_events=len(stream) + 1)
    folds.facts("acc_a", stream, now())
    folds.facts("acc_b", stream, now())  # over the bound: acc_a's fold is forgotten
    folds.facts("acc_b", stream, now())
    assert folds.folded_again == 2
    folds.facts("acc_a", stream, now())
    assert folds.folded_again == 3
