"""`backfill` on a generated fleet, against the fleet's independent oracle told the new thresholds,
and against `plan --rules`; then `--apply` under and past the share guard."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import pytest

from simulation.harness.apply_fleet import snapshot
from simulation.oracle.expected_corrections import compare_corrections
from simulation.oracle.expected_state import true_state
from simulation.oracle.rules_v1 import Thresholds, v1
from simulation.readback import oracle_corrections, read_records, read_tables
from simulation.stripe_world import StripeWorld
from tests.support.fleet import FLEET_NOW
from tests.support.rules import SPEC_V1

pytestmark = [pytest.mark.integration, pytest.mark.fleet(kind="served")]

# rules-v1 §4's file suspending at 30 days instead of 21 and writing debts off at 45 instead of 60
RULES_V2 = SPEC_V1.replace('version = "v1"', 'version = "v2-later-suspension"').replace(
    "days_overdue_at_least = 21", "days_overdue_at_least = 30").replace(
    "bad_debt_days_overdue = 60", "bad_debt_days_overdue = 45")
ORACLE_V2 = Thresholds((("suspended", 30, None), ("final_notice", 14, 4), ("retrying", 3, 1), ("grace", None, None)),
                       45)


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("rules") / "v2.toml"
    path.write_text(RULES_V2)
    return path


def oracle_changes(fleet) -> set[tuple]:
    """(account, field, from, to) of every §3 column the oracle says differs between v1 and v2 at T."""
    plan_features, _ = read_tables(fleet.dsns)
    found = set()
    for r in read_records(fleet.dsns, StripeWorld.load(fleet.stripe_dir)):
        old, new = (true_state(r, plan_features, FLEET_NOW, rules=rules) for rules in (v1(), ORACLE_V2))
        pairs = {"stage": (old.standing.stage, new.standing.stage),
                 "bad_debt": (old.standing.bad_debt, new.standing.bad_debt),
                 "delinquent": (old.standing.delinquent, new.standing.delinquent), "status": (old.status, new.status),
                 "attempt_count": (old.standing.failed_attempts, new.standing.failed_attempts),
                 "next_action_at": tuple(t.isoformat() if t else None
                                         for t in (old.standing.next_action_at, new.standing.next_action_at)),
                 **{f"entitlements.{f}": (old.entitlements[f], new.entitlements[f]) for f in new.entitlements}}
        found |= {(r.account_id, name, a, b) for name, (a, b) in pairs.items() if a != b}
    return found


def active_generation(fleet) -> tuple | None:
    with psycopg.connect(fleet.dsns["eventstore"]) as conn:
        if conn.execute("SELECT to_regclass('read_model_generation')").fetchone()[0] is None:
            return None
        return conn.execute("SELECT rules_version, rules_digest FROM read_model_generation WHERE active").fetchone()


def test_backfill_reports_what_the_oracle_says_changes_and_what_plan_says_disagrees(fleet, rules_file):
    at = FLEET_NOW.isoformat()
    done = json.loads(fleet.recompute("backfill", "--rules", str(rules_file), "--as-of", at, "--workers", "2",
                                      "--json").stdout)
    assert (done["rules_version"], done["active_rules_version"], done["applied"]) == ("v2-later-suspension", "v1", False)
    assert done["as_of"] == at and done["accounts_checked"] == fleet.manifest.accounts
    assert done["events_replayed"] > fleet.manifest.accounts
    reported = {(c["account_id"], c["field"], c["from"], c["to"]) for c in done["against_active"]["changes"]}
    expected = oracle_changes(fleet)
    assert expected, "the fleet must hold accounts the new thresholds move, for this test to mean anything"
    assert reported == expected
    assert done["against_active"]["accounts_changing"] == len({c[0] for c in expected})

    planned = fleet.plan_json("--rules", str(rules_file))
    assert done["against_legacy"]["accounts_disagreeing"] == planned["accounts_disagreeing"]
    assert compare_corrections(planned["corrections"], done["against_legacy"]["corrections"]) == []
    assert active_generation(fleet) is None, "a backfill without --apply switches nothing"


def test_backfill_apply_over_the_share_guard_writes_nothing_and_switches_nothing(fleet, rules_file):
    before = snapshot(fleet.dsns)
    refused = fleet.recompute("backfill", "--rules", str(rules_file), "--as-of", FLEET_NOW.isoformat(), "--apply",
                              check=False)
    assert refused.returncode == 1, refused.stderr
    assert "--max-share" in refused.stderr
    assert snapshot(fleet.dsns) == before
    assert active_generation(fleet) is None


def test_backfill_apply_forced_switches_and_the_stores_then_hold_the_new_truth(fleet, rules_file):
    at = FLEET_NOW.isoformat()
    text = fleet.recompute("backfill", "--rules", str(rules_file), "--as-of", at, "--apply", "--force").stdout
    assert "resumed generation" in text, "the earlier runs built this generation: the rerun resumes it"
    assert "applied: generation" in text
    assert active_generation(fleet)[0] == "v2-later-suspension"
    assert oracle_corrections(fleet.dsns, fleet.stripe_dir, FLEET_NOW, rules=ORACLE_V2) == []
    assert fleet.plan_json("--rules", str(rules_file))["corrections"] == []
    unflagged = fleet.plan_json()
    assert (unflagged["rules_version"], unflagged["corrections"]) == ("v2-later-suspension", []), \
        "without --rules plan runs under the rules the switch made active"


def test_after_the_switch_apply_with_the_old_rules_is_refused_with_exit_2_and_told_to_backfill(fleet, tmp_path):
    old = tmp_path / "v1.toml"
    old.write_text(SPEC_V1)
    before = snapshot(fleet.dsns)
    refused = fleet.recompute("apply", "--rules", str(old), "--as-of", FLEET_NOW.isoformat(), check=False)
    assert refused.returncode == 2, refused.stderr
    assert "backfill" in refused.stderr and refused.stderr.count("\n") == 1
    assert snapshot(fleet.dsns) == before


def test_a_backfill_of_other_rules_drops_the_generation_an_earlier_backfill_left_pending(fleet, rules_file, tmp_path):
    later = tmp_path / "v3.toml"
    later.write_text(RULES_V2.replace('"v2-later-suspension"', '"v3"').replace("= 45", "= 50"))
    fleet.recompute("backfill", "--rules", str(later), "--workers", "1")
    text = fleet.recompute("backfill", "--rules", str(rules_file), "--workers", "1").stdout
    assert "dropped generation" in text and "rules v3" in text
    with psycopg.connect(fleet.dsns["eventstore"]) as conn:
        assert conn.execute("SELECT count(*) FROM read_model_generation WHERE rules_version = 'v3'").fetchone()[0] == 0


def test_an_unreachable_dask_scheduler_is_one_line_naming_the_variable_and_exit_2(fleet, rules_file):
    env = {**fleet.env, "RECOMPUTE_DASK_SCHEDULER": "tcp://127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-c", "from recompute.cli import main; main()", "backfill", "--rules",
                           str(rules_file), "--workers", "2"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("recompute: RECOMPUTE_DASK_SCHEDULER: cannot reach") and done.stderr.count("\n") == 1
