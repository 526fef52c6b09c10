"""`backfill` and `backfill --apply` killed with SIGKILL: the active generation is the old or the new,
never a mix; a rerun completes with the same report; nothing is applied twice.
(More trials at random points: scripts/backfill_kill_trials.py.)"""

from __future__ import annotations

import pytest

from simulation.harness.apply_fleet import a_drifting_fleet
from simulation.harness.backfill_trials import BackfillTrials
from simulation.harness.databases import STORES, scratch_databases
from tests.e2e.test_backfill_fleet import RULES_V2

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trials(tmp_path_factory):
    rules_file = tmp_path_factory.mktemp("rules") / "v2.toml"
    rules_file.write_text(RULES_V2)
    with scratch_databases(*STORES) as dsns:
        fleet = a_drifting_fleet(dsns, tmp_path_factory.mktemp("stripe"), accounts=120, drifting=25)
        yield BackfillTrials(fleet, rules_file)


def test_a_backfill_killed_mid_build_leaves_nothing_active_and_its_rerun_resumes_to_the_same_report(trials):
    outcome = trials.run(apply=False, after_s=trials.seconds[False] * 0.6)
    assert outcome.active_after_kill == "old" and outcome.rerun_matches, outcome


def test_a_backfill_apply_killed_just_after_the_switch_is_finished_by_its_rerun_each_correction_once(trials):
    outcome = trials.run(apply=True, after_switch_s=0.0)
    assert outcome.active_after_kill == "new", outcome
    assert outcome.ok(apply=True), outcome


def test_a_backfill_apply_killed_before_the_switch_leaves_the_old_rules_active(trials):
    outcome = trials.run(apply=True, after_s=trials.seconds[True] * 0.3)
    assert outcome.active_after_kill == "old" and outcome.legacy_changes == 0, outcome
    assert outcome.ok(apply=True), outcome


def test_a_backfill_apply_killed_after_the_switch_is_finished_by_a_plain_apply_under_the_new_rules(trials):
    outcome = trials.run(apply=True, after_switch_s=0.0, rerun_plain_apply=True)
    assert outcome.active_after_kill == "new", outcome
    assert outcome.ok(apply=True), outcome
