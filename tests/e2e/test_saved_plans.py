"""`plan --out FILE` then `apply --plan FILE` (cli.md "Saved plans"): exactly the reviewed corrections
are written, each by compare-and-set on its `from`; a file edited, applied already or made under other
rules is refused with one line, exit 2, nothing written; a kill -9 then a rerun writes each once."""

from __future__ import annotations

from pathlib import Path

import orjson
import psycopg
import pytest

from domain.rules import RULES_V1
from domain.saved_plan import plan_digest, read_document, saved_document
from eventlog.stores import Stores
from projections.apply.protocol import ApplyOptions
from projections.apply.saved import apply_saved
from projections.plan import plan
from simulation.harness.apply_fleet import NOW, a_drifting_fleet, snapshot
from simulation.harness.databases import STORES, scratch_databases
from simulation.harness.kill_trials import KillTrials
from tests.support.rules import SPEC_V1

pytestmark = [pytest.mark.integration, pytest.mark.broker, pytest.mark.slow]
AS_OF = ("--as-of", NOW.isoformat())
STAGES = ("none", "grace", "retrying", "final_notice", "suspended")


@pytest.fixture
def saved(fleet, tmp_path) -> Path:
    path = tmp_path / "reviewed.json"
    fleet.recompute("plan", *AS_OF, "--out", str(path))
    return path


def audit_rows(fleet) -> list[tuple]:
    with psycopg.connect(fleet.dsns["eventstore"]) as conn:
        if conn.execute("SELECT to_regclass('correction_audit')").fetchone()[0] is None:
            return []
        return conn.execute("SELECT status, plan_digest FROM correction_audit").fetchall()


def shape(correction: dict) -> bytes:
    return orjson.dumps({k: correction[k] for k in ("account_id", "table", "op", "key", "column", "from", "to")},
                        option=orjson.OPT_SORT_KEYS)


def test_a_saved_plan_is_plan_json_with_its_digest_creation_time_rules_and_log_position(fleet, saved):
    document = orjson.loads(saved.read_bytes())
    planned = orjson.loads(fleet.recompute("plan", *AS_OF, "--json").stdout)
    assert [shape(c) for c in document["corrections"]] == [shape(c) for c in planned["corrections"]]
    assert document["plan_digest"] == plan_digest(document)
    assert (document["rules_version"], document["rules_digest"]) == (RULES_V1.version, RULES_V1.digest)
    assert document["log_position"] > 0 and document["created_at"] and document["as_of"] == NOW.isoformat()
    assert audit_rows(fleet) == []


def test_apply_plan_writes_every_reviewed_correction_and_lists_the_one_a_legacy_writer_changed_as_stale(fleet, saved):
    document = orjson.loads(saved.read_bytes())
    moved = next(c for c in document["corrections"]
                 if c["table"] == "subs.subs_dunning" and c["column"] == "stage" and c["op"] == "update")
    other = next(s for s in STAGES if s not in (moved["from"], moved["to"]))
    with psycopg.connect(fleet.dsns["subs"]) as conn:  # A3 writes the row after the review
        conn.execute("UPDATE subs_dunning SET stage = %s WHERE account_id = %s", (other, moved["account_id"]))

    done = orjson.loads(fleet.recompute("apply", "--plan", str(saved), "--json", "--force").stdout)

    assert done["stale"] == 1 and [shape(c) for c in done["stale_corrections"]] == [shape(moved)]
    assert done["applied"] == len(document["corrections"]) - 1
    assert done["plan_digest"] == document["plan_digest"]
    assert sorted(shape(c) for c in done["corrections"]) == sorted(shape(c) for c in document["corrections"])
    with psycopg.connect(fleet.dsns["subs"]) as conn:
        assert conn.execute("SELECT stage FROM subs_dunning WHERE account_id = %s",
                            (moved["account_id"],)).fetchone()[0] == other  # the writer's value was left alone
    assert {digest for _, digest in audit_rows(fleet)} == {document["plan_digest"]}
    with psycopg.connect(fleet.dsns["eventstore"]) as conn:
        bodies = [body for (body,) in conn.execute("SELECT body FROM outbox_event WHERE body IS NOT NULL")]
    assert bodies and all(body["plan_digest"] == document["plan_digest"] for body in bodies)
    left = orjson.loads(fleet.recompute("plan", *AS_OF, "--json").stdout)
    assert {c["account_id"] for c in left["corrections"]} == {moved["account_id"]}
    fleet.recompute("report", "--html", str(saved.with_suffix(".html")), *AS_OF)
    page = saved.with_suffix(".html").read_text()
    plans = page[page.index('<table id="plans-table">'):]
    plans = plans[:plans.index("</table>")]
    assert plans.count(document["plan_digest"]) == len({c["table"] for c in document["corrections"]})
    assert "<td>subs.subs_dunning</td>" in plans


def test_a_hand_edited_plan_is_refused_and_nothing_is_written(fleet, saved):
    document = orjson.loads(saved.read_bytes())
    document["corrections"][0]["to"] = document["corrections"][0]["from"]
    saved.write_bytes(orjson.dumps(document))
    before = snapshot(fleet.dsns)
    refused = fleet.recompute("apply", "--plan", str(saved), "--force", expect=2)
    assert refused.stderr.strip().splitlines() == [
        f"recompute: {saved}: its content does not match its plan_digest (edited since `plan --out` wrote it?); "
        "refusing to apply it"]
    assert snapshot(fleet.dsns) == before and audit_rows(fleet) == []


def test_the_same_plan_applied_twice_is_refused_the_second_time(fleet, saved):
    fleet.recompute("apply", "--plan", str(saved), "--force")
    written = len(audit_rows(fleet))
    before = snapshot(fleet.dsns)
    refused = fleet.recompute("apply", "--plan", str(saved), "--force", expect=2)
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "was already applied, by run" in refused.stderr
    assert snapshot(fleet.dsns) == before and len(audit_rows(fleet)) == written


def test_a_plan_saved_under_other_rules_than_the_active_ones_is_refused(fleet, tmp_path):
    rules = tmp_path / "v2.toml"
    rules.write_text(SPEC_V1.replace('"v1"', '"v2"').replace("days_overdue = 60", "days_overdue = 45"))
    path = tmp_path / "v2-plan.json"
    fleet.recompute("plan", *AS_OF, "--rules", str(rules), "--out", str(path))
    before = snapshot(fleet.dsns)
    refused = fleet.recompute("apply", "--plan", str(path), "--force", expect=2)
    assert refused.stderr.strip().splitlines() == [
        f"recompute: {path}: made under rules v2 (digest {orjson.loads(path.read_bytes())['rules_digest']}), but the "
        f"active rules are rules v1 (digest {RULES_V1.digest}); make a new plan with `recompute plan --out`"]
    assert snapshot(fleet.dsns) == before and audit_rows(fleet) == []


def test_apply_plan_refuses_options_that_would_change_the_plan(fleet, saved):
    refused = fleet.recompute("apply", "--plan", str(saved), "--account", "acc_000001", expect=2)
    assert "--plan writes the saved plan as it is: --account cannot change it" in refused.stderr


@pytest.fixture(scope="module")
def saved_trials(tmp_path_factory):
    with scratch_databases(*STORES) as dsns:
        fleet = a_drifting_fleet(dsns, tmp_path_factory.mktemp("stripe"), accounts=120, drifting=25)
        planned = plan(Stores.from_dsns(dsns), RULES_V1, NOW, workers=1)
        document = orjson.loads(orjson.dumps(saved_document(planned.as_json(), NOW, 1)))
        reviewed = read_document(document, "reviewed.json")
        yield KillTrials(fleet, applier=lambda copy, on_step: apply_saved(
            Stores.from_dsns(copy), RULES_V1, reviewed, ApplyOptions(force=True, workers=1), on_step=on_step))


@pytest.mark.parametrize("landmark", ["started", "recorded", "committing:billing_prod", "committed:subs", "settled"])
def test_apply_plan_killed_at_any_point_then_rerun_writes_each_correction_once(saved_trials, landmark):
    step = saved_trials.steps.index(landmark) + 1
    outcome = saved_trials.run(step=step)
    assert outcome.killed and outcome.ok and outcome.applied_total == saved_trials.expected, (step, outcome)


def test_a_plan_whose_digest_was_made_anew_for_a_forbidden_write_is_refused_before_anything(fleet, saved):
    document = orjson.loads(saved.read_bytes())
    document["corrections"].append({**document["corrections"][0], "table": "billing_prod.charges", "column": "amount",
                                     "key": {"charge_id": "ch_1"}})
    del document["plan_digest"]
    saved.write_bytes(orjson.dumps({**document, "plan_digest": plan_digest(document)}))
    before = snapshot(fleet.dsns)
    refused = fleet.recompute("apply", "--plan", str(saved), "--force", expect=2)
    assert refused.stderr.strip().splitlines() == [
        f"recompute: {saved}: billing_prod.charges: not a table the projector writes; nothing was written"]
    assert snapshot(fleet.dsns) == before and audit_rows(fleet) == []


def test_a_saved_plan_of_one_account_is_applied_without_the_share_guard_as_apply_account_is(fleet, tmp_path):
    planned = orjson.loads(fleet.recompute("plan", *AS_OF, "--json").stdout)
    account = planned["corrections"][0]["account_id"]
    path = tmp_path / "one.json"
    fleet.recompute("plan", *AS_OF, "--account", account, "--out", str(path))
    done = orjson.loads(fleet.recompute("apply", "--plan", str(path), "--json").stdout)
    mine = [c for c in planned["corrections"] if c["account_id"] == account]
    assert done["applied"] == len(mine) and shapes_of(done["corrections"]) == shapes_of(mine)


def shapes_of(corrections: list[dict]) -> list[bytes]:
    return sorted(shape(c) for c in corrections)
