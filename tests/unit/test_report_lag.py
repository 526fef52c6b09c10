"""The report's correction lag: percentiles per bucket of the committed times (projections/report/data.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from projections.report.charts import lag_over_time
from projections.report.data import lag_by_bucket

NINE = datetime(2026, 3, 1, 9, tzinfo=UTC)
TEN = datetime(2026, 3, 1, 10, tzinfo=UTC)


def test_each_bucket_has_its_count_median_99th_percentile_and_max_by_nearest_rank_in_time_order():
    hundred = [(TEN, float(s)) for s in range(100, 0, -1)]  # 1..100 s, given out of order
    rows = lag_by_bucket([*hundred, (NINE, 0.5), (NINE, 2.5), (NINE, 1.5)])
    assert rows == [{"at": NINE, "n": 3, "p50": 1.5, "p99": 2.5, "max": 2.5},
                    {"at": TEN, "n": 100, "p50": 50.0, "p99": 99.0, "max": 100.0}]


def test_one_correction_is_its_own_every_percentile_and_no_rows_make_no_buckets():
    assert lag_by_bucket([(NINE, 0.25)]) == [{"at": NINE, "n": 1, "p50": 0.25, "p99": 0.25, "max": 0.25}]
    assert lag_by_bucket([]) == []


def test_the_lag_chart_draws_p50_p99_and_max_of_each_bucket_with_their_seconds_scaled_to_the_largest():
    chart = lag_over_time(lag_by_bucket([(NINE, 1.0), (NINE, 4.0), (TEN, 2.0)]))
    bars = {(m.extra["at"][11:13], m.extra["series"]): m for m in chart.marks}
    assert {k: m.value for k, m in bars.items()} == {("09", "p50"): 1.0, ("09", "p99"): 4.0, ("09", "max"): 4.0,
                                                     ("10", "p50"): 2.0, ("10", "p99"): 2.0, ("10", "max"): 2.0}
    assert bars[("09", "max")].h == 2 * bars[("10", "max")].h == 4 * bars[("09", "p50")].h
