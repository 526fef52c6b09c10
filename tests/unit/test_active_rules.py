"""Which rules a command runs under (projections/read_model/active_rules.choose): the active
generation's, the default ones before any backfill, and who may try other rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.rules import RULES_V1, parse_rules
from projections.read_model.active_rules import choose
from projections.read_model.generations import Generation
from tests.support.rules import SPEC_V1

T = datetime(2026, 3, 1, tzinfo=UTC)
V2 = parse_rules(SPEC_V1.replace('version = "v1"', 'version = "v2"').replace("days_overdue_at_least = 21",
                                                                             "days_overdue_at_least = 30"))
V3 = parse_rules(SPEC_V1.replace('version = "v1"', 'version = "v3"').replace("days_overdue_at_least = 3",
                                                                             "days_overdue_at_least = 5"))


def generation(rules=V2) -> Generation:
    return Generation(id=7, rules_version=rules.version, rules_digest=rules.digest, rules_text=rules.to_toml(),
                      as_of=T, partitions=32, created_at=T, built_at=T, activated_at=T, active=True)


@pytest.mark.parametrize("writes", [False, True])
def test_without_rules_flag_every_command_runs_under_the_active_generation(writes):
    assert choose(None, RULES_V1, generation(), default_from_env=False, writes=writes).rules == V2


@pytest.mark.parametrize("writes", [False, True])
def test_before_any_backfill_the_default_rules_are_the_active_ones(writes):
    assert choose(None, RULES_V1, None, default_from_env=False, writes=writes).rules == RULES_V1
    assert choose(None, V2, None, default_from_env=True, writes=writes).rules == V2
    assert choose(V2, V2, None, default_from_env=True, writes=writes).rules == V2


def test_plan_may_try_other_rules_apply_is_refused_and_told_to_backfill():
    assert choose(V3, RULES_V1, generation(), default_from_env=False, writes=False).rules == V3
    refused = choose(V3, RULES_V1, generation(), default_from_env=False, writes=True)
    assert refused.rules is None and refused.refusal == (
        f"--rules: rules v3 (digest {V3.digest}) are not the active rules v2 (digest {V2.digest}; generation 7): "
        "run `recompute backfill --rules FILE --apply` to make them active")
    before_backfill = choose(V2, RULES_V1, None, default_from_env=False, writes=True)
    assert before_backfill.rules is None and "not the active rules v1" in before_backfill.refusal


def test_rules_equal_to_the_active_ones_by_digest_are_accepted_by_apply():
    same_meaning = V2.model_copy(update={"version": "v2-copy"})
    assert choose(same_meaning, RULES_V1, generation(), default_from_env=False, writes=True).rules == same_meaning


def test_recompute_rules_naming_other_rules_than_the_active_generation_warns_for_plan_and_refuses_apply():
    planned = choose(None, V3, generation(), default_from_env=True, writes=False)
    assert planned.rules == V2 and planned.warning.startswith("RECOMPUTE_RULES names rules v3")
    refused = choose(None, V3, generation(), default_from_env=True, writes=True)
    assert refused.rules is None and refused.refusal.startswith("RECOMPUTE_RULES: rules v3")
