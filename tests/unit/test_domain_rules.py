"""Rules as data: the built-in rules v1, rules files, and the errors a bad file gets."""

from __future__ import annotations

from datetime import timedelta

import pytest
from freezegun import freeze_time
from hypothesis import given, reject, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from domain.rules import MAX_DAYS, RULES_V1, STAGE_NAMES, Rules, RulesError, Stage, load_rules, parse_rules
from tests.support.builders import T0, an_account, past_due, state_now
from tests.support.rules import SPEC_V1, refused


def test_the_built_in_rules_are_the_rules_v1_file_of_the_spec():
    assert parse_rules(SPEC_V1) == RULES_V1
    assert RULES_V1.day_thresholds == (3, 14, 21, 60)


def test_a_rules_file_is_loaded_from_disk(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(SPEC_V1.replace('"v1"', '"v1-copy"'))
    assert load_rules(path).version == "v1-copy"


def test_a_missing_rules_file_says_which_file(tmp_path):
    with pytest.raises(RulesError, match=r"rules file .*nope\.toml: cannot read it"):
        load_rules(tmp_path / "nope.toml")


@freeze_time(T0)
def test_a_rules_file_with_suspension_at_30_days_changes_the_stage_and_is_carried_into_the_state():
    later = parse_rules(SPEC_V1.replace('"v1"', '"v2-30d"').replace("= 21", "= 30"))
    events = an_account(invoice=past_due(days=25, attempts=1))
    assert state_now(events).stage == "suspended"
    state = state_now(events, rules=later)
    assert (state.stage, state.status, state.rules_version) == ("final_notice", "active", "v2-30d")
    assert state.next_action_at == T0 + timedelta(days=5)  # 30 days overdue: suspended


def test_a_misspelt_stage_key_is_refused_with_what_where_and_a_suggestion():
    text = SPEC_V1.replace("days_overdue_at_least = 14", "days_overdue_atleast = 14")
    assert refused(text) == ("rules file rules.toml: [[dunning.stage]] #2 'final_notice': unknown key "
                             "'days_overdue_atleast' (did you mean 'days_overdue_at_least'?)")


BAD_FILES = [
    pytest.param("version = \n", "rules file rules.toml: not valid TOML: ", "line 1", id="not TOML"),
    pytest.param(SPEC_V1.replace('version = "v1"\n', ""), "missing key 'version'", "", id="missing version"),
    pytest.param(SPEC_V1.replace("version = \"v1\"", "version = 1"), "version: must be a non-empty string", "",
                 id="version not a string"),
    pytest.param("verison = 'v1'\n" + SPEC_V1, "unknown top-level key 'verison' (did you mean 'version'?)", "",
                 id="unknown top-level key"),
    pytest.param(SPEC_V1.replace('version = "v1"\n', 'version = "v1"\nmode = "strict"\n'),
                 "unknown top-level key 'mode'", "", id="unknown top-level key, no suggestion"),
    pytest.param(SPEC_V1.replace('"retrying"', '"retry"'),
                 "[[dunning.stage]] #3 'retry': unknown stage name 'retry' (did you mean 'retrying'?)", "",
                 id="unknown stage name"),
    pytest.param(SPEC_V1.replace('"grace"', '"none"'), "'none' is implied when nothing is past due", "",
                 id="stage none"),
    pytest.param(SPEC_V1.replace('"final_notice"', '"suspended"'),
                 "[[dunning.stage]] #2 'suspended': duplicate stage: 'suspended' is already stage #1", "",
                 id="duplicate stage"),
    pytest.param(SPEC_V1.replace("= 14", "= -14"),
                 "[[dunning.stage]] #2 'final_notice': days_overdue_at_least: must be 0 or more, got -14", "",
                 id="negative threshold"),
    pytest.param(SPEC_V1.replace("failed_attempts_at_least = 1", "failed_attempts_at_least = 1.5"),
                 "#3 'retrying': failed_attempts_at_least: must be a whole number, got 1.5", "",
                 id="fractional threshold"),
    pytest.param(SPEC_V1.replace("= 21", '= "21"'), "#1 'suspended': days_overdue_at_least: must be a whole "
                 "number, got '21'", "", id="threshold as a string"),
    pytest.param(SPEC_V1.replace("failed_attempts_at_least = 4", "failed_attempts_at_least = true"),
                 "#2 'final_notice': failed_attempts_at_least: must be a whole number, not the boolean true", "",
                 id="boolean given as a number"),
    pytest.param(SPEC_V1.replace("bad_debt_days_overdue = 60", "bad_debt_days_overdue = false"),
                 "bad_debt_days_overdue: must be a whole number, not the boolean false", "",
                 id="boolean bad-debt threshold"),
    pytest.param('version = "v1"\nbad_debt_days_overdue = 60\n', "[[dunning.stage]]: no stages", "",
                 id="no stages"),
    pytest.param(SPEC_V1.replace('name = "suspended"\ndays_overdue_at_least = 21', 'name = "suspended"'),
                 "[[dunning.stage]] #2 'final_notice': unreachable: stage #1 'suspended' has no condition", "",
                 id="a no-condition stage before others"),
    pytest.param(SPEC_V1.split("[[dunning.stage]]          # no condition")[0],
                 "[[dunning.stage]] #3 'retrying': the last stage must have no condition", "",
                 id="no catch-all stage"),
    pytest.param(SPEC_V1.replace('name = "grace"', "days_overdue_at_least = 0"),
                 "[[dunning.stage]] #4: missing key 'name'", "", id="stage without name"),
    pytest.param(SPEC_V1.replace("bad_debt_days_overdue = 60\n", ""), "missing key 'bad_debt_days_overdue'", "",
                 id="missing bad-debt threshold"),
    pytest.param(SPEC_V1 + "\n[dunning.escalation]\nx = 1\n", "[dunning]: unknown key 'escalation'", "",
                 id="unknown dunning key"),
]


@pytest.mark.parametrize(("text", "says", "also"), BAD_FILES)
def test_a_bad_rules_file_is_refused_with_what_and_where(text, says, also):
    message = refused(text)
    assert message.startswith("rules file rules.toml: ")
    assert says in message
    assert also in message


def test_a_days_threshold_past_a_hundred_years_is_refused_before_it_overflows_a_date():
    """timedelta ends at 999,999,999 days, and due date + threshold must stay a date: plan crashed with
    OverflowError on such a file; it is refused where it is written."""
    message = refused(SPEC_V1.replace("days_overdue_at_least = 21", "days_overdue_at_least = 1000000000"))
    assert "[[dunning.stage]] #1 'suspended': days_overdue_at_least" in message and "36500" in message
    assert "bad_debt_days_overdue" in refused(SPEC_V1.replace("= 60", "= 99999999999"))


def test_the_built_in_rules_serialise_as_the_spec_file_reads():
    assert parse_rules(RULES_V1.to_toml()) == RULES_V1
    assert RULES_V1.to_toml().startswith('version = "v1"\nbad_debt_days_overdue = 60\n\n[[dunning.stage]]\n')


def test_a_version_with_quotes_backslashes_and_control_characters_reads_back_as_written():
    odd = RULES_V1.model_copy(update={"version": 'v1 "quoted" \\ tab\t new\nline \x7f \x01 é 😀'})
    assert parse_rules(odd.to_toml()) == odd


def _any_rules(draw: st.DrawFn) -> Rules:
    names = draw(st.permutations(STAGE_NAMES))[:draw(st.integers(1, len(STAGE_NAMES)))]
    days, attempts = st.none() | st.integers(0, MAX_DAYS), st.none() | st.integers(0, 10)
    stages = [Stage(name=n, days_overdue_at_least=draw(days), failed_attempts_at_least=draw(attempts))
              for n in names[:-1]] + [Stage(name=names[-1])]
    version = draw(st.text(min_size=1, max_size=12).filter(str.strip))
    try:
        return Rules(version=version, bad_debt_days_overdue=draw(st.integers(0, MAX_DAYS)), stages=tuple(stages))
    except ValidationError:
        reject()  # a stage the ones above it shadow: not rules at all


@settings(max_examples=200, deadline=None)
@given(st.composite(_any_rules)())
def test_any_rules_serialise_to_toml_that_parses_back_as_the_same_rules(rules):
    again = parse_rules(rules.to_toml())
    assert again == rules and again.digest == rules.digest
