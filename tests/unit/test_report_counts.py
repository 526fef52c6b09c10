"""The report's numbers (projections/report/): counts per account, merged across partitions, drawn as marks."""

from __future__ import annotations

from datetime import timedelta

from domain.diff import Correction, Drift
from domain.held import HeldRow
from projections.report.aggregate import Aggregate
from projections.report.charts import heatmap, stage_bars
from projections.report.data import History, ReportData, bucket_for, parked_by_reason
from projections.report.render import render_html
from tests.support.states import T, a_state


def fix(account: str, table: str, column: str | None, before, after, op: str = "update") -> Correction:
    return Correction(account_id=account, table=table, op=op, key={"account_id": account}, column=column,
                      **{"from": before}, to=after)


def a_fleet_of_three() -> list[tuple]:
    """acc_1: subs says 'none' where the truth is 'retrying' (stage and attempts); acc_2: billing has no
    dunning row for 'grace'; acc_3 agrees, with one held row."""
    return [
        (a_state(account_id="acc_1", stage="retrying"),
         [fix("acc_1", "subs.subs_dunning", "stage", "none", "retrying"),
          fix("acc_1", "subs.subs_dunning", "attempt_count", 0, 2)], []),
        (a_state(account_id="acc_2", stage="grace"),
         [fix("acc_2", "billing_prod.dunning", None, None, {"stage": "grace"}, op="insert")], []),
        (a_state(account_id="acc_3"), [], [HeldRow(account_id="acc_3", table="cf_prod.accounts",
                                                    key={"account_id": "acc_3"}, reason="parked", parked_at=T)]),
    ]


def counted(accounts) -> Aggregate:
    counts = Aggregate()
    for state, corrections, held in accounts:
        counts.add(state, corrections, held)
    return counts


def test_each_cell_counts_an_account_once_and_the_stores_copy_is_what_the_correction_replaces():
    counts = counted(a_fleet_of_three())
    assert (counts.accounts_checked, counts.accounts_disagreeing, counts.corrections) == (3, 2, 3)
    assert counts.cells == {("subs.subs_dunning", "stage"): 1, ("subs.subs_dunning", "attempt_count"): 1,
                            ("billing_prod.dunning", "(insert)"): 1}
    assert counts.stages["true"] == {"retrying": 1, "grace": 1, "none": 1}
    assert counts.stages["subs.subs_dunning"] == {"none": 2, "grace": 1}
    assert counts.stages["billing_prod.dunning"] == {"retrying": 1, "none": 2}
    assert counts.held == {("cf_prod.accounts", "parked"): 1} and counts.top == [(2, "acc_1"), (1, "acc_2")]


def test_partitions_merged_count_what_one_pass_counts():
    fleet = a_fleet_of_three()
    whole, first, second = counted(fleet), counted(fleet[:1]), counted(fleet[1:])
    first.merge(second)
    assert (first.cells, first.stages, first.held, first.top, first.accounts_disagreeing) == \
        (whole.cells, whole.stages, whole.held, whole.top, whole.accounts_disagreeing)


def test_the_heat_map_has_a_cell_for_every_correctable_column_and_its_marks_carry_the_counts():
    counts = counted(a_fleet_of_three())
    chart = heatmap(counts.cells, counts.accounts_checked)
    drawn = {(m.extra["table"], m.extra["column"]): m.value for m in chart.marks}
    assert {cell: n for cell, n in drawn.items() if n} == dict(counts.cells)
    assert ("cf_prod.accounts", "status") in drawn and ("subs.subs_customer", "(delete)") in drawn
    stage_marks = stage_bars(counts.stages).marks
    assert sum(m.value for m in stage_marks if m.extra["series"] == "true") == 3


def test_parked_reasons_are_grouped_without_the_ids_they_name():
    rows = [{"source": "stripe", "tbl": "invoice", "reason": f"invoice in_{i} points at no customer, so at no account",
             "n": 1, "examples": [f"in_{i}"]} for i in range(5)]
    [group] = parked_by_reason(rows)
    assert group["n"] == 5 and group["reason"] == "invoice … points at no customer, so at no account"
    assert group["examples"] == ["in_0", "in_1", "in_2"]


def test_the_time_buckets_grow_with_the_span_so_the_bars_stay_few():
    assert bucket_for(T, T + timedelta(minutes=30)) == "minute"
    assert bucket_for(T, T + timedelta(hours=5)) == "hour"
    assert bucket_for(T, T + timedelta(days=20)) == "day"
    assert bucket_for(None, None) == "day"


def test_the_page_draws_every_section_it_has_data_for_and_says_so_where_it_has_none():
    counts = counted(a_fleet_of_three())
    history = History(bucket="minute", applied=[{"at": T, "table": "subs.subs_dunning", "n": 2}],
                      audit_status={"applied": 2}, outbox=[{"type": "account.dunning_stage_changed", "status": "sent",
                                                            "n": 1}], sent=[{"at": T, "n": 1}],
                      parked=[{"source": "cf_prod", "table": "accounts", "reason": "no plan", "n": 1,
                               "examples": ["acc_9"]}])
    full = render_html(ReportData(as_of=T, rules_version="v1", fleet=counts, history=history,
                                  explanations={"acc_1": "account acc_1 <explained>"}), generated_at=T)
    for drawn in ('id="heatmap"', 'id="stage-chart"', 'id="applied-chart"', 'id="outbox-chart"', 'id="sent-table"',
                  'id="parked-chart"', 'id="held-table"', 'href="#explain-acc_1"', "account acc_1 &lt;explained&gt;"):
        assert drawn in full
    empty = render_html(ReportData(as_of=T, rules_version="v1", fleet=Aggregate()), generated_at=T)
    assert "No drift" in empty and "Nothing applied yet" in empty and "No parked records" in empty
    assert "<script" not in full and "http" not in full.replace('xmlns="http://www.w3.org/2000/svg"', "")


def drifted(c: Correction, cause: str, owner: str, since, by: str) -> Correction:
    return c.model_copy(update={"drift": Drift(cause=cause, since=since, owner=owner, by=by)})


def test_drift_is_counted_by_owner_and_cause_by_age_and_pattern_and_merges_across_partitions():
    paid = "evt_1Paid"
    acc_1 = [drifted(fix("acc_1", "subs.subs_dunning", "stage", "retrying", "none"), "missed_change", "A3",
                     T - timedelta(days=2), paid),
             drifted(fix("acc_1", "subs.subs_account", "delinquent", True, False), "missed_change", "A3",
                     T - timedelta(days=2), paid)]
    acc_2 = [drifted(fix("acc_2", "subs.subs_dunning", "stage", "retrying", "none"), "overwrote_correction", "A3",
                     T - timedelta(minutes=5), "subs.subs_dunning[acc_2]@snap:9")]
    left, right = Aggregate(), Aggregate()
    left.add_drift(acc_1, T)
    right.add_drift(acc_2, T, {("subs.subs_dunning", "update", "account_id=acc_2", "stage"): T - timedelta(minutes=35)})
    left.merge(right)
    assert left.drift_corrections == {("A3", "missed_change"): 2, ("A3", "overwrote_correction"): 1}
    assert left.drift_accounts == {("A3", "missed_change"): 1, ("A3", "overwrote_correction"): 1}
    assert left.drift_age == {"1 – 7 days": 1, "< 1 hour": 1}
    assert left.rewritten == {("A3", "subs.subs_dunning"): 1} and left.rewritten_after == {"< 1 hour": 1}
    assert left.top_patterns() == {"A3": [
        ("subs_account.delinquent not following a Stripe event", 1),
        ("subs_dunning.stage corrected, then set wrong again by a write to subs_dunning", 1),
        ("subs_dunning.stage not following a Stripe event", 1)]}
