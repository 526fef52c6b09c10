"""The shipped alerting rules (ops/prometheus/recompute-rules.yml), checked and unit-tested by Debian's
`promtool`: every alert has a case where it fires and one where it does not, and says what it is
and where its runbook entry is."""

from __future__ import annotations

import yaml

from tests.support.prometheus import RULES, RULES_TEST, promtool, shipped_rules

RUNBOOK = "https://recompute.example.com/operations/runbook.html#"


def test_the_shipped_rules_are_valid_prometheus_rules():
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(shipped_rules())} rules found" in checked.stdout


def test_every_alert_passes_its_promtool_cases():
    tested = promtool("test", "rules", str(RULES_TEST))
    print(tested.stdout, tested.stderr)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_does_not():
    cases = [case for test in yaml.safe_load(RULES_TEST.read_text())["tests"] for case in test["alert_rule_test"]]
    for rule in shipped_rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']}: no case where it fires"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']}: no case where it does not fire"


def test_every_alert_has_a_summary_and_a_runbook_entry_of_its_own():
    for rule in shipped_rules():
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        assert annotations["runbook_url"] == RUNBOOK + rule["alert"].lower(), rule["alert"]
