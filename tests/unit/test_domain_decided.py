"""A decision stands: with no new event, the true state at any T in [T0, decided_until) is the state at
T0 restated at T (domain/truth.decided_until, restated) — every field, for any invoices."""

from __future__ import annotations

from datetime import timedelta

from freezegun import freeze_time
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.fold import fold
from domain.rules import RULES_V1
from domain.truth import decided_until, restated, true_state
from tests.support.builders import T0, Invoice, a_catalog, an_account, due_in, now, past_due

HOUR = timedelta(hours=1)


def an_invoice(n: int, days: float, status: str, attempts: int, stripe: bool) -> Invoice:
    """Due `days` ago (negative: in -days); built under the frozen clock."""
    kw = {"status": status, "attempts": attempts, "invoice_id": f"inv_000042_{n}",
          "stripe_status": "open" if stripe and status == "open" else None}
    return past_due(days=days, **kw) if days >= 0 else due_in(days=-days, **kw)


invoice_draws = st.tuples(st.floats(min_value=-40, max_value=40, allow_nan=False),
                          st.sampled_from(["open", "open", "paid", "uncollectible"]),
                          st.integers(0, 5),  # failed charges may come before the due date too
                          st.booleans())
accounts = st.tuples(st.sampled_from(["active", "active", "closed"]), st.lists(invoice_draws, max_size=4))


@settings(max_examples=150, deadline=None)
@given(accounts, st.lists(st.integers(min_value=0, max_value=24 * 70), min_size=1, max_size=12))
def test_the_state_until_a_decision_ends_is_the_decision_restated(account, hours):
    with freeze_time(T0):
        status, drawn = account
        events = an_account(status=status, invoices=tuple(an_invoice(n, *d) for n, d in enumerate(drawn)))
        at0 = now()
        facts = fold(events, as_of=at0, legacy=False)
    decided = true_state(facts, a_catalog(), RULES_V1, at0, explain=False)
    until = decided_until(decided)
    assert until is None or until > at0
    for h in hours:
        at = at0 + h * HOUR
        if until is not None and at >= until:
            continue
        later = facts.model_copy(update={"as_of": at})
        assert restated(decided, at, RULES_V1) == true_state(later, a_catalog(), RULES_V1, at, explain=False)


def test_an_invoice_falling_due_with_failed_attempts_ends_the_decision_though_the_stage_stays():
    with freeze_time(T0):
        late, next_one = past_due(days=30), due_in(days=2, attempts=3)
        decided = true_state(fold(an_account(invoices=(late, next_one)), as_of=now(), legacy=False),
                             a_catalog(), RULES_V1, now(), explain=False)
    assert decided.stage == "suspended" and decided.next_action_at == late.due_at + 60 * 24 * HOUR
    assert decided_until(decided) == next_one.due_at
