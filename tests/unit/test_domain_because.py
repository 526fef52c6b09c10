"""Every field of the true state says which rule and which events decided it."""

from __future__ import annotations

from freezegun import freeze_time

from domain.truth import TrueState
from tests.support.builders import T0, an_account, due_in, past_due, state_now

TOP_LEVEL = {"plan", "status", "stage", "stage_since", "days_overdue", "failed_attempts", "bad_debt", "delinquent",
             "next_action_at", "stripe_customer_id", "subscription"}


@freeze_time(T0)
def test_the_stage_names_its_rule_the_condition_that_held_and_the_deciding_events():
    late = past_due(days=2, attempts=4, stripe_status="open")
    because = state_now(an_account(invoice=late)).because["stage"]
    assert because.rule == "stage = final_notice: rule 'final_notice' (failed_attempts 4 >= 4)"
    assert f"evt_in_{late.invoice_id}" in because.refs
    assert because.text.startswith("stage = final_notice: rule 'final_notice' (failed_attempts 4 >= 4), from ")


@freeze_time(T0)
def test_every_field_and_every_invoice_field_has_a_because():
    late, upcoming = past_due(days=2, attempts=1), due_in(days=3, stripe_status="open")
    state = state_now(an_account(invoices=(late, upcoming), manual=("sso",)))
    assert TOP_LEVEL <= set(state.because)
    for invoice_id in state.invoices:
        for field in ("status", "amount_paid", "attempt_count", "amount_due"):
            assert f"invoices.{invoice_id}.{field}" in state.because
    assert {f"entitlements.{f}" for f in state.entitlements} <= set(state.because)
    assert f"stripe_invoices.in_{upcoming.invoice_id}" in state.because


@freeze_time(T0)
def test_the_true_state_round_trips_through_json():
    state = state_now(an_account(invoice=past_due(days=15, attempts=2)))
    again = TrueState.model_validate_json(state.model_dump_json())
    assert again.model_dump() == state.model_dump()
    assert '"rule":"stage = final_notice' in state.model_dump_json()


@freeze_time(T0)
def test_without_explanations_the_state_is_the_same_and_its_because_is_empty():
    """plan asks for no reasons; everything else must be exactly what explain sees."""
    from domain.fold import fold
    from domain.rules import RULES_V1
    from domain.truth import true_state
    from tests.support.builders import a_catalog

    facts = fold(an_account(invoice=past_due(days=16, attempts=4)), as_of=T0)
    explained = true_state(facts, a_catalog(), RULES_V1, T0)
    quiet = true_state(facts, a_catalog(), RULES_V1, T0, explain=False)
    assert explained.because and quiet.because == {}
    assert explained.stage == "final_notice"
    assert quiet.model_dump(exclude={"because"}) == explained.model_dump(exclude={"because"})


@freeze_time(T0)
def test_reasons_asked_for_by_name_are_those_of_the_whole_and_what_they_repeat_the_refs_of():
    from domain.fold import fold
    from domain.rules import RULES_V1
    from domain.truth import true_state
    from tests.support.builders import a_catalog

    late, upcoming = past_due(days=20, attempts=2), due_in(days=3, stripe_status="open")
    facts = fold(an_account(invoices=(late, upcoming)), as_of=T0)
    whole = true_state(facts, a_catalog(), RULES_V1, T0)
    asked = {"status", "bad_debt", f"invoices.{late.invoice_id}.status", "stripe_invoices.in_nothing"}
    some = true_state(facts, a_catalog(), RULES_V1, T0, only=asked)

    assert set(some.because) == {"status", "stage", "bad_debt", "days_overdue", f"invoices.{late.invoice_id}.status"}
    assert some.because == {k: whole.because[k] for k in some.because}
    assert some.model_dump(exclude={"because"}) == whole.model_dump(exclude={"because"})
