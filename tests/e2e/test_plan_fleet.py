"""`plan` and `explain` on a generated fleet, against the fleet's manifest and its independent oracle."""

from __future__ import annotations

import json

import pytest

import simulation.oracle.rules_v1 as oracle
from simulation.oracle.expected_corrections import compare_corrections
from simulation.readback import oracle_corrections
from tests.support.fleet import FLEET_NOW
from tests.support.rules import SPEC_V1

pytestmark = [pytest.mark.integration, pytest.mark.fleet(kind="served")]

# rules-v1 §4's file, suspending at 30 days instead of 21
RULES_SUSPENDED_AT_30 = SPEC_V1.replace('version = "v1"', 'version = "v1-suspend-30"').replace(
    "days_overdue_at_least = 21", "days_overdue_at_least = 30")


def test_plan_lists_exactly_the_drifting_accounts_and_the_injected_corrections(fleet):
    plan = fleet.plan_json()
    assert plan["as_of"] == FLEET_NOW.isoformat() and plan["rules_version"] == "v1"
    assert plan["accounts_checked"] == fleet.manifest.accounts
    assert sorted({c["account_id"] for c in plan["corrections"]}) == fleet.manifest.drifting_accounts
    assert plan["accounts_disagreeing"] == len(fleet.manifest.drifting_accounts)
    assert compare_corrections(fleet.manifest.expected_corrections, plan["corrections"]) == []


def test_plan_with_other_rules_lists_exactly_what_those_rules_change(fleet, tmp_path, monkeypatch):
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(RULES_SUSPENDED_AT_30)
    plan = fleet.plan_json("--rules", str(rules_file))
    assert plan["rules_version"] == "v1-suspend-30"

    # the independent oracle, told the same thresholds, says what the stores must then hold
    monkeypatch.setattr(oracle, "STAGE_RULES", (("suspended", 30, None), ("final_notice", 14, 4),
                                                ("retrying", 3, 1), ("grace", None, None)))
    monkeypatch.setattr(oracle, "THRESHOLD_DAYS", (3, 14, 30, 60))
    expected = oracle_corrections(fleet.dsns, fleet.stripe_dir, FLEET_NOW)
    assert compare_corrections(expected, plan["corrections"]) == []
    newly = {c["account_id"] for c in plan["corrections"]} - set(fleet.manifest.drifting_accounts)
    assert newly, "the fleet must hold accounts between 21 and 30 days overdue for this test to mean anything"


def test_plan_of_one_account_lists_only_its_corrections(fleet):
    account = fleet.manifest.drifting_accounts[0]
    plan = fleet.plan_json("--account", account)
    expected = [c for c in fleet.manifest.expected_corrections if c["account_id"] == account]
    assert plan["accounts_checked"] == 1
    assert compare_corrections(expected, plan["corrections"]) == []


def test_explain_replays_one_account_with_its_timeline_state_reasons_and_drift(fleet):
    account = fleet.manifest.drifting_accounts[0]
    explained = json.loads(fleet.recompute("explain", account, "--json", "--as-of", FLEET_NOW.isoformat()).stdout)
    assert set(explained) >= {"account_id", "as_of", "rules_version", "state", "timeline", "because", "corrections"}
    times = [entry["time"] for entry in explained["timeline"]]
    assert times == sorted(times) and all(t <= FLEET_NOW.isoformat() for t in times)
    assert {"stage", "status", "bad_debt", "next_action_at"} <= set(explained["because"])
    assert explained["because"]["stage"]["rule"].startswith(f"stage = {explained['state']['stage']}")
    expected = [c for c in fleet.manifest.expected_corrections if c["account_id"] == account]
    assert compare_corrections(expected, explained["corrections"]) == []
    text = fleet.recompute("explain", account, "--as-of", FLEET_NOW.isoformat()).stdout
    assert "timeline" in text and "because" in text and f"account {account}" in text


def test_explain_cites_in_because_only_refs_its_timeline_shows(fleet):
    for account in fleet.manifest.drifting_accounts[:8]:
        explained = json.loads(fleet.recompute("explain", account, "--json", "--as-of", FLEET_NOW.isoformat()).stdout)
        shown = {entry["ref"] for entry in explained["timeline"]}
        cited = {ref for why in explained["because"].values() for ref in why["events"]}
        assert cited and cited - shown == set(), f"{account}: because cites refs its timeline does not show"


def test_explain_of_an_account_with_no_events_says_so_and_fails(fleet):
    result = fleet.recompute("explain", "acc_nobody", check=False)
    assert result.returncode == 1 and "no events for account 'acc_nobody'" in result.stderr


def test_a_bad_rules_file_is_refused_with_what_and_where(fleet, tmp_path):
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(RULES_SUSPENDED_AT_30.replace("days_overdue_at_least = 14", "days_overdue_atleast = 14"))
    result = fleet.recompute("plan", "--rules", str(rules_file), check=False)
    assert result.returncode == 2
    assert "#2 'final_notice'" in result.stderr and "days_overdue_atleast" in result.stderr
