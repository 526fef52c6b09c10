"""Rules identity: a version and a digest of what the rules mean; a version claimed for other rules is refused."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from domain.rules import RULES_V1, parse_rules
from domain.rules_identity import KnownRules, RulesConflict, check_identity
from tests.support.rules import SPEC_V1

SUSPENDED_AT_30 = SPEC_V1.replace("days_overdue_at_least = 21", "days_overdue_at_least = 30")


def test_rules_v1_has_a_fixed_digest():
    """A change of what v1 means is a change of this line."""
    assert RULES_V1.digest == "2742993c6f6b6a8b"


def test_the_digest_is_the_first_16_hex_digits_of_the_sha256_of_the_canonical_json():
    import hashlib

    assert RULES_V1.digest == hashlib.sha256(RULES_V1.canonical_json().encode()).hexdigest()[:16]
    assert orjson.loads(RULES_V1.canonical_json()) == {
        "bad_debt_days_overdue": 60,
        "stages": [
            {"name": "suspended", "days_overdue_at_least": 21, "failed_attempts_at_least": None},
            {"name": "final_notice", "days_overdue_at_least": 14, "failed_attempts_at_least": 4},
            {"name": "retrying", "days_overdue_at_least": 3, "failed_attempts_at_least": 1},
            {"name": "grace", "days_overdue_at_least": None, "failed_attempts_at_least": None},
        ],
    }


V1_REWRITTEN = """\
# the numbers of rules v1, written otherwise, under another name
bad_debt_days_overdue   =   60
version = "v1-again"

[[dunning.stage]]
days_overdue_at_least = 21     # key before name
name = "suspended"

[[dunning.stage]]
name = "final_notice"
failed_attempts_at_least = 4
days_overdue_at_least = 14

[[dunning.stage]]
failed_attempts_at_least = 1
name = "retrying"
days_overdue_at_least = 3
[[dunning.stage]]
name = 'grace'
"""


def test_comments_whitespace_key_order_and_the_version_name_do_not_change_the_digest():
    assert parse_rules(V1_REWRITTEN).digest == RULES_V1.digest


def test_the_order_of_stages_and_every_number_change_the_digest():
    def stages(*lines: str) -> str:
        return "version = 'v9'\nbad_debt_days_overdue = 60\n" + "".join(
            f"[[dunning.stage]]\n{line}\n" for line in lines)

    one = stages("name = 'suspended'\ndays_overdue_at_least = 21", "name = 'final_notice'\nfailed_attempts_at_least = 4",
                 "name = 'retrying'\ndays_overdue_at_least = 3", "name = 'grace'")
    other = stages("name = 'suspended'\ndays_overdue_at_least = 21", "name = 'retrying'\ndays_overdue_at_least = 3",
                   "name = 'final_notice'\nfailed_attempts_at_least = 4", "name = 'grace'")
    digests = {parse_rules(text).digest for text in (one, other, SPEC_V1, SUSPENDED_AT_30,
                                                      SPEC_V1.replace("= 60", "= 61"), SPEC_V1.replace("= 4", "= 5"))}
    assert len(digests) == 6


def test_a_file_claiming_v1_with_other_numbers_is_refused_naming_both_digests():
    lying = parse_rules(SUSPENDED_AT_30)
    with pytest.raises(RulesConflict) as caught:
        check_identity(lying, [])
    assert str(caught.value) == (f"version 'v1' is already known with digest {RULES_V1.digest} (built in); these "
                                 f"rules differ (digest {lying.digest}): give them a new version")
    assert caught.value.said_of("this file's rules").endswith(
        f"(built in); this file's rules differ (digest {lying.digest}): give them a new version")


def test_a_version_known_from_an_earlier_run_is_refused_with_other_rules_and_accepted_with_the_same():
    v2 = parse_rules(SPEC_V1.replace('"v1"', '"v2"').replace("= 60", "= 90"))
    earlier = KnownRules(version="v2", digest=v2.digest, run_id="1b0e5c1e-0000-4000-8000-000000000001",
                         first_used_at=datetime(2026, 3, 1, tzinfo=UTC))
    check_identity(v2, [earlier])
    check_identity(RULES_V1, [earlier])
    check_identity(parse_rules(SPEC_V1.replace('"v1"', '"v3"')), [earlier])
    other_v2 = parse_rules(SPEC_V1.replace('"v1"', '"v2"'))
    with pytest.raises(RulesConflict, match=(
            rf"^version 'v2' is already known with digest {v2.digest} \(first used by apply run "
            rf"1b0e5c1e-0000-4000-8000-000000000001 at 2026-03-01T00:00:00\+00:00\); these rules differ "
            rf"\(digest {other_v2.digest}\): give them a new version$")):
        check_identity(other_v2, [earlier])
