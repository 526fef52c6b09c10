"""What the rules decide of a true state, alone (domain/truth.ruled_fields: backfill's state under
the active rules) is exactly those fields of the whole true state, for any invoices and rules."""

from __future__ import annotations

from datetime import timedelta

from freezegun import freeze_time
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.fold import fold
from domain.rules import RULES_V1, parse_rules
from domain.truth import RuledFields, ruled_fields, true_state
from tests.support.builders import T0, a_catalog, an_account, now
from tests.support.rules import SPEC_V1
from tests.unit.test_domain_decided import accounts, an_invoice

LATER_SUSPENSION = parse_rules(SPEC_V1.replace('version = "v1"', 'version = "v2"').replace(
    "days_overdue_at_least = 21", "days_overdue_at_least = 30").replace(
    "bad_debt_days_overdue = 60", "bad_debt_days_overdue = 45"))


@settings(max_examples=150, deadline=None)
@given(accounts, st.sampled_from([RULES_V1, LATER_SUSPENSION]), st.integers(min_value=0, max_value=24 * 70))
def test_the_fields_the_rules_decide_are_those_of_the_true_state(account, rules, hours):
    with freeze_time(T0):
        status, drawn = account
        events = an_account(status=status, invoices=tuple(an_invoice(n, *d) for n, d in enumerate(drawn)))
        at0 = now()
        facts = fold(events, as_of=at0, legacy=False)
    at = at0 + timedelta(hours=hours)
    whole = true_state(facts, a_catalog(), rules, at, explain=False)
    assert ruled_fields(facts, a_catalog(), rules, at) == RuledFields(*(getattr(whole, f) for f in RuledFields._fields))
