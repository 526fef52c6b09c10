"""`recompute report --html`: the fleet's drift as a page a real browser draws, with plan's numbers."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.support.browser import Marks, open_page
from tests.support.fleet import FLEET_NOW

pytestmark = [pytest.mark.integration, pytest.mark.fleet(kind="served")]


@pytest.mark.browser
def test_the_report_opens_in_chromium_without_errors_and_its_heat_map_is_what_plan_finds(fleet, tmp_path):
    page = tmp_path / "report.html"
    fleet.recompute("report", "--html", str(page), "--as-of", FLEET_NOW.isoformat())
    plan = fleet.plan_json()
    opened = open_page(page, tmp_path)
    assert opened.console == [], "the page logged to the console"
    assert opened.screenshot.stat().st_size > 10_000, "the screenshot is (nearly) empty"
    dom = Marks(opened.dom)
    heat = dom.by_id("heatmap")
    assert int(heat["data-accounts-disagreeing"]) == plan["accounts_disagreeing"] > 0
    assert int(heat["data-accounts-checked"]) == plan["accounts_checked"]
    expected = Counter()
    for _account, cell in {(c["account_id"], (c["table"], c["column"] if c["op"] == "update" else f"({c['op']})"))
                           for c in plan["corrections"]}:
        expected[cell] += 1
    drawn = {(m["data-table"], m["data-column"]): int(m["data-accounts"]) for m in dom.marks("heatmap", "cell")}
    assert {cell: n for cell, n in drawn.items() if n} == dict(expected)
    assert sum(drawn.values()) == sum(expected.values()) >= plan["accounts_disagreeing"]
    summary = dom.by_id("summary")
    assert int(summary["data-corrections"]) == len(plan["corrections"])


def test_each_stage_series_counts_every_account_and_a_stores_copy_differs_where_plan_corrects_it(fleet, tmp_path):
    page = tmp_path / "report.html"
    fleet.recompute("report", "--html", str(page), "--as-of", FLEET_NOW.isoformat())
    dom = Marks(open_page(page, tmp_path).dom)
    bars = dom.marks("stage-chart", "bar")
    by_series = Counter()
    for bar in bars:
        by_series[bar["data-series"]] += int(bar["data-accounts"])
    assert set(by_series) == {"true", "billing_prod.dunning", "subs.subs_dunning"}
    assert set(by_series.values()) == {fleet.manifest.accounts}
    true = Counter({bar["data-stage"]: int(bar["data-accounts"]) for bar in bars if bar["data-series"] == "true"})
    copy = Counter({bar["data-stage"]: int(bar["data-accounts"]) for bar in bars
                    if bar["data-series"] == "subs.subs_dunning"})
    expected = Counter(true)  # the store's copy: the true stage, except where plan corrects its stage
    for c in fleet.plan_json()["corrections"]:
        if c["table"] == "subs.subs_dunning" and c["column"] == "stage":
            expected[c["to"]] -= 1
            expected[c["from"]] += 1
        elif c["table"] == "subs.subs_dunning" and c["op"] == "insert":
            expected[c["to"]["stage"]] -= 1
            expected["none"] += 1
    assert +copy == +expected and copy != true


def test_after_apply_the_report_shows_what_apply_wrote_and_announced(fleet, tmp_path):
    applied = json.loads(fleet.recompute("apply", "--json", "--force", "--as-of", FLEET_NOW.isoformat()).stdout)
    page = tmp_path / "report.html"
    fleet.recompute("report", "--html", str(page), "--as-of", FLEET_NOW.isoformat())
    opened = open_page(page, tmp_path)
    assert opened.console == []
    dom = Marks(opened.dom)
    wrote = sum(int(m["data-corrections"]) for m in dom.marks("applied-chart", "column"))
    assert wrote == int(dom.by_id("applied-chart")["data-total"]) == applied["applied"] > 0
    announced = sum(int(m["data-events"]) for m in dom.marks("outbox-chart", "bar"))
    assert announced == int(dom.by_id("outbox-chart")["data-total"]) > 0
    assert int(dom.by_id("heatmap")["data-accounts-disagreeing"]) == 0


def test_a_report_path_in_a_missing_directory_is_a_one_line_usage_error_and_nothing_is_written(fleet, tmp_path):
    result = fleet.recompute("report", "--html", str(tmp_path / "nowhere" / "report.html"), check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "nowhere" in result.stderr
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.browser
def test_the_console_check_sees_what_a_page_logs(tmp_path):
    """The check above means something: a page that logs and throws is seen doing both."""
    page = tmp_path / "noisy.html"
    page.write_text("<p>x</p><script>console.error('boom'); undefinedFunction();</script>")
    console = open_page(page, tmp_path).console
    assert len(console) == 2 and "boom" in console[0] and "undefinedFunction" in console[1]
