"""A `project` pass's corrections keep when their causes happened, and the report shows the lag."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.rules import RULES_V1
from eventlog.stores import Stores
from projections.report.data import ReportData, gather
from projections.report.render import render_html
from tests.support.follow import a_calm_world, an_overdue_invoice, project

pytestmark = pytest.mark.integration


def test_a_project_pass_gives_the_report_a_correction_lag_section_which_a_report_without_lag_has_not(stores):
    accounts = a_calm_world(stores, accounts=4)
    project(stores)
    assert gather(Stores.from_dsns(stores), RULES_V1, datetime.now(UTC), workers=1).lag is None, "no follower corrected anything yet"
    an_overdue_invoice(stores, accounts[1], days=5)
    project(stores)
    data = gather(Stores.from_dsns(stores), RULES_V1, datetime.now(UTC), workers=1)
    assert data.lag is not None and sum(r["n"] for r in data.lag) == 3  # stage, attempts and delinquent of one account
    assert all(0 <= r["p50"] <= r["p99"] <= r["max"] for r in data.lag)
    page = render_html(data, generated_at=datetime.now(UTC))
    assert 'id="lag-table"' in page and 'id="lag-chart"' in page and 'data-series="p99"' in page
    without = ReportData(as_of=data.as_of, rules_version="v1", fleet=data.fleet, history=data.history)
    assert 'id="lag"' not in render_html(without, generated_at=datetime.now(UTC))
