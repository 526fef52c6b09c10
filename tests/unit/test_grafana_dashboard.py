"""The Grafana dashboard (ops/grafana/recompute.json), checked without a Grafana server: every panel's
PromQL parses with Debian's promtool (as a recording rule's expression), and the dashboard shows what an
operator looks at first. That it reads only metrics /metrics serves is checked against real scrapes
in tests/e2e/test_prometheus.py."""

from __future__ import annotations

import json

import yaml

from tests.support.prometheus import DASHBOARD, dashboard_expressions, metric_names, promtool


def panels() -> list[dict]:
    found = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        found += [panel, *panel.get("panels", [])]
    return [panel for panel in found if panel["type"] != "row"]


def test_every_panel_s_promql_parses_with_promtool(tmp_path):
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:panel_{n}", "expr": expr}
                                                        for n, expr in enumerate(dashboard_expressions())]}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(dashboard_expressions())} rules found" in checked.stdout


def test_every_panel_reads_the_prometheus_datasource_chosen_on_the_dashboard_and_says_what_it_shows():
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["description"] and panel["targets"], panel["title"]
        assert 0 <= panel["gridPos"]["x"] and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
    ids = [panel["id"] for panel in json.loads(DASHBOARD.read_text())["panels"]]
    assert len(ids) == len(set(ids))


def test_the_dashboard_shows_lag_percentiles_drift_by_owner_and_cause_rates_sources_waiting_and_the_breaker():
    exprs = dashboard_expressions()

    def reading(metric: str) -> list[str]:
        return [expr for expr in exprs if metric in metric_names(expr)]

    lag = reading("recompute_correction_lag_seconds_bucket")
    assert {q for q in ("0.5", "0.9", "0.99") if any(f"histogram_quantile({q}," in expr for expr in lag)} == {
        "0.5", "0.9", "0.99"}
    assert any("by (owner, cause)" in expr for expr in reading("recompute_drift_open"))
    assert any("* 60" in expr for expr in reading("recompute_corrections_applied_total"))
    assert any("* 60" in expr for expr in reading("recompute_events_appended_total"))
    assert any("by (source)" in expr for expr in reading("recompute_source_lag_seconds"))
    for waiting in ("recompute_parked_records", "recompute_stripe_waiting_objects", "recompute_outbox_waiting"):
        assert reading(waiting), waiting
    assert reading("recompute_follow_writing_paused")
