"""Every correction's `drift` on a fleet whose drift has known origins, by snapshots and by change streams."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from recompute.metrics import EventStoreCollector
from simulation.drift_stories import Expected
from tests.support.browser import Marks, open_page
from tests.support.drift_fleet import played_fleet

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # plays two fleets in real time: ~2 min

SCREENSHOTS = Path("/tmp/recompute-drift-report")  # outside the repository, to be looked at


def mismatches(expected: list[Expected], corrections: list[dict],
               committed: dict[datetime, tuple[datetime, datetime]] | None = None) -> list[str]:
    """What differs between the manifest and the plan's corrections, one line each. `committed`
    (a change stream's run): a legacy write's `since` is its commit, within its phase's commits."""
    found = {(c["account_id"], c["table"], c["op"], c["column"]): c for c in corrections}
    wanted = {(e.account_id, e.table, e.op, e.column): e for e in expected}
    problems = [f"not in the manifest: {k}" for k in sorted(set(found) - set(wanted), key=str)]
    problems += [f"not planned: {k}" for k in sorted(set(wanted) - set(found), key=str)]
    for key in sorted(set(found) & set(wanted), key=str):
        e, drift = wanted[key], found[key]["drift"]
        since = datetime.fromisoformat(drift["since"])
        if committed is None or not e.legacy_write:
            on_time = since == e.instant
        else:
            began, ended = committed[e.instant]
            on_time = began <= since <= ended
        if (drift["cause"], drift["owner"], drift["rewrites"]) != (e.cause, e.owner, e.rewrites) or not on_time \
                or not e.matches_ref(drift["by"]):
            problems.append(f"{key}: drift {drift}, manifest {e}")
    return problems


@pytest.fixture(scope="module", params=["snapshot", "stream"])
def played(request, tmp_path_factory):
    """Played twice: read by snapshots on the shared server, and by change streams on the suite's
    logical cluster (the shared server may be at any wal_level)."""
    server = {"server": request.getfixturevalue("logical_server")} if request.param == "stream" else {}
    with played_fleet(tmp_path_factory.mktemp(request.param), how=request.param, **server) as fleet:
        yield fleet


def test_every_corrections_drift_is_the_cause_owner_instant_and_ref_the_fleet_wrote(played):
    corrections = played.plan["corrections"]
    assert corrections and all(c["drift"]["since"] <= played.at.isoformat() for c in corrections)
    problems = mismatches(played.fleet.expected, corrections, played.committed if played.how == "stream" else None)
    assert problems == [], "\n".join(problems)
    assert {e.cause for e in played.fleet.expected} == {"wrong_write", "missed_change", "missing",
                                                        "overwrote_correction"}


def test_explain_says_each_drift_in_words_and_as_plan_does(played):
    account = played.fleet.accounts("invoice_paid")[0]
    explained = json.loads(played.recompute("explain", account, "--json", "--as-of", played.at.isoformat()))
    planned = [c for c in played.plan["corrections"] if c["account_id"] == account]
    assert [c["drift"] for c in explained["corrections"]] == [c["drift"] for c in planned]
    text = " ".join(played.recompute("explain", account, "--as-of", played.at.isoformat()).split())  # unwrapped
    evt = planned[0]["drift"]["by"]
    paid = played.fleet.instants["P"].isoformat()[:19].replace("T", " ")
    assert f"subs_dunning.stage has been 'retrying' since {paid}" in text
    assert f"when Stripe's {evt} made it 'none'; its writer (A3) did not follow" in text


@pytest.mark.browser
def test_the_reports_owner_by_cause_cells_sum_to_plans_corrections_in_chromium(played, tmp_path):
    page = tmp_path / "report.html"
    played.recompute("report", "--html", str(page), "--as-of", played.at.isoformat())
    opened = open_page(page, tmp_path)
    assert opened.console == [], "the page logged to the console"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(opened.screenshot, SCREENSHOTS / f"drift-report-{played.how}.png")
    dom = Marks(opened.dom)
    cells = dom.marks("drift-grid", "cell")
    drawn = Counter({(m["data-owner"], m["data-cause"]): int(m["data-corrections"]) for m in cells})
    planned = Counter((c["drift"]["owner"], c["drift"]["cause"]) for c in played.plan["corrections"])
    assert +drawn == planned and sum(drawn.values()) == len(played.plan["corrections"])
    assert int(dom.by_id("drift-grid")["data-corrections"]) == len(played.plan["corrections"])
    ages = dom.marks("drift-age-chart", "bar")
    assert sum(int(m["data-accounts"]) for m in ages) == played.plan["accounts_disagreeing"]
    assert "A3" in opened.dom and "overwrote_correction" in opened.dom


def test_apply_audit_status_and_metrics_carry_the_drift_plan_said(played):
    applied = json.loads(played.recompute("apply", "--force", "--json", "--as-of", played.at.isoformat()))
    drift = {(c["account_id"], c["table"], c["op"], c["column"]): c["drift"] for c in played.plan["corrections"]}
    assert {(c["account_id"], c["table"], c["op"], c["column"]): c["drift"] for c in applied["corrections"]} == drift
    with psycopg.connect(played.dsns["eventstore"]) as conn:
        audited = conn.execute("SELECT count(*) FROM correction_audit WHERE run_id = %s AND drift IS NOT NULL",
                               (applied["run_id"],)).fetchone()[0]
        bodies = [body for (body,) in conn.execute("SELECT body FROM outbox_event WHERE run_id = %s",
                                                   (applied["run_id"],))]
    assert audited == len(drift)
    causes = {ref for body in bodies for ref in body["causes"]}
    assert {d["by"] for d in drift.values()} <= causes, "the outgoing events name what caused each drift"
    status = json.loads(played.recompute("status", "--json"))
    by_owner = Counter((d["owner"], d["cause"]) for d in drift.values())
    assert {(o, c): n for o, causes in status["drift_open"].items() for c, n in causes.items()} == dict(by_owner)
    with ConnectionPool(played.dsns["eventstore"], min_size=1, max_size=1) as pool:
        families = {f.name: f for f in EventStoreCollector(pool).collect()}
    opened = {(s.labels["owner"], s.labels["cause"]): s.value for s in families["recompute_drift_open"].samples}
    assert opened == dict(by_owner)
    rewritten = {(s.labels["owner"], s.labels["table"]): s.value
                 for s in families["recompute_corrections_rewritten"].samples if s.name.endswith("_total")}
    assert rewritten == {("A3", "subs.subs_dunning"): len(played.fleet.accounts("rewritten"))}
