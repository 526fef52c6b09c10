"""Rules texts the tests share: the spec's rules v1, a file refused as unreachable, and how a refusal reads."""

from __future__ import annotations

import pytest

from domain.rules import RulesError, parse_rules

SPEC_V1 = """\
version = "v1"
bad_debt_days_overdue = 60

[[dunning.stage]]          # first that applies wins, top to bottom
name = "suspended"
days_overdue_at_least = 21

[[dunning.stage]]
name = "final_notice"
days_overdue_at_least = 14
failed_attempts_at_least = 4

[[dunning.stage]]
name = "retrying"
days_overdue_at_least = 3
failed_attempts_at_least = 1

[[dunning.stage]]          # no condition: always applies
name = "grace"
"""


RETRYING_ABOVE_SUSPENDED = """\
version = "v2"
bad_debt_days_overdue = 60

[[dunning.stage]]
name = "retrying"
days_overdue_at_least = 3

[[dunning.stage]]
name = "suspended"
days_overdue_at_least = 21

[[dunning.stage]]
name = "grace"
"""


def refused(text: str) -> str:
    with pytest.raises(RulesError) as caught:
        parse_rules(text, source="rules.toml")
    return str(caught.value)
