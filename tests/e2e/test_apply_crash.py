"""`apply` killed with SIGKILL at points of its protocol: nothing applied goes unaudited, and a rerun
finishes the job with every correction applied exactly once. (More trials: scripts/apply_kill_trials.py.)"""

from __future__ import annotations

import random

import pytest

from simulation.harness.apply_fleet import a_drifting_fleet
from simulation.harness.databases import STORES, scratch_databases
from simulation.harness.kill_trials import KillTrials

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trials(tmp_path_factory):
    with scratch_databases(*STORES) as dsns:
        yield KillTrials(a_drifting_fleet(dsns, tmp_path_factory.mktemp("stripe"), accounts=120, drifting=25))


def landmarks(steps: list[str]) -> list[int]:
    """1-based step numbers worth a kill (besides right after the intents and after the last legacy
    commit, the two tests below): mid-way through a store's transaction, just before a commit, between
    two stores' commits, and after settling."""
    wanted = []
    for name in ("committing:cf_prod", "committed:billing_prod", "settled"):
        wanted.append(steps.index(name) + 1)
    writes = [i + 1 for i, s in enumerate(steps) if s == "wrote:subs"]
    wanted.append(writes[len(writes) // 2])
    return wanted


def test_a_kill_at_any_point_leaves_nothing_applied_unaudited_and_a_rerun_applies_each_correction_once(trials):
    steps = trials.steps
    points = sorted(set(landmarks(steps)) | {random.Random(4).randint(1, len(steps))})
    for step in points:
        outcome = trials.run(step=step)
        where = f"killed at step {step} ({steps[step - 1]})"
        assert outcome.killed, where
        assert outcome.unaudited == [], where
        assert outcome.applied_twice == [] and outcome.applied_total == trials.expected, where
        assert outcome.left_over == 0 and outcome.pending_or_held == 0, where


def test_a_kill_after_the_legacy_commit_is_recovered_as_applied_not_redone(trials):
    step = trials.steps.index("committed:subs") + 1  # every store committed, nothing settled yet
    outcome = trials.run(step=step)
    assert outcome.legacy_changes > 0 and outcome.unaudited == []
    assert outcome.recovered["applied"] == trials.expected and outcome.recovered["abandoned"] == 0
    assert outcome.applied_total == trials.expected


def test_a_kill_before_any_legacy_write_abandons_the_intents_and_the_rerun_redoes_them(trials):
    outcome = trials.run(step=trials.steps.index("recorded") + 1)
    assert outcome.legacy_changes == 0
    assert outcome.recovered["abandoned"] == trials.expected
    assert outcome.applied_total == trials.expected and outcome.ok
