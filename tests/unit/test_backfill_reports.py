"""A backfill partition's report: the same bytes as the dict dumped whole, held in a spool that
leaves memory once it is large (a task's memory stays flat however many accounts it has)."""

from __future__ import annotations

import orjson

from domain.rules import RULES_V1
from projections.read_model.partition import ReportSpool, _Report


def a_report(changes: int, corrections: int) -> tuple[_Report, dict]:
    report, whole = _Report(checked=7, events=123), {"changes": [], "corrections": []}
    for i in range(changes):
        change = {"account_id": f"acc_{i:06d}", "field": "dunning_stage", "from": "grace", "to": "suspended"}
        report.changes.add(orjson.dumps(change))
        whole["changes"].append(change)
    for i in range(corrections):
        correction = {"account_id": f"acc_{i:06d}", "store": "subs", "table": "subs_dunning", "to": "x" * 40}
        report.corrections.add(orjson.dumps(correction))
        whole["corrections"].append(correction)
    return report, whole


def test_a_report_is_the_bytes_of_its_dict_dumped_whole():
    for changes, corrections in ((0, 0), (1, 0), (0, 2), (300, 40)):
        report, whole = a_report(changes, corrections)
        expected = orjson.dumps({"accounts_checked": 7, "events": 123, **whole,
                                 "active_rules_version": RULES_V1.version, "active_rules_digest": RULES_V1.digest})
        assert report.document(RULES_V1) == expected
        report.close()


def test_a_spool_keeps_its_items_in_memory_only_up_to_its_limit():
    small, large = ReportSpool(max_bytes=64 * 1024), ReportSpool(max_bytes=64 * 1024)
    item = orjson.dumps({"account_id": "acc_000001", "to": "y" * 200})
    for _ in range(100):
        small.add(item)
    for _ in range(10_000):  # ~2.3 MB of corrections: a large task's partition
        large.add(item)
    assert small.in_memory and not large.in_memory
    assert len(orjson.loads(large.json_array())) == 10_000
    small.close()
    large.close()
