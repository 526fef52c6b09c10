"""The legacy stores' change streams (pgoutput) into the account event log, on the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ingestion.legacy.cdc.setup import drop_store, setup_store
from eventlog.own_tables import ensure_own_schema
from tests.support.cdc import a_stream, event_count, events_of, read_until, slots_of
from tests.support.legacy import a_customer_mapping, an_account, an_invoice, create_stores, execute

pytestmark = pytest.mark.integration


@pytest.fixture
def world(stores):
    create_stores(stores)
    ensure_own_schema(stores["eventstore"])
    an_account(stores)
    an_invoice(stores)
    a_customer_mapping(stores)
    return stores


def set_up(dsns, *stores_):
    return {store: setup_store(store, dsns[store], dsns["eventstore"]) for store in stores_ or
            ("cf_prod", "billing_prod", "subs")}


def test_setup_records_the_rows_already_there_once(world):
    reports = set_up(world)
    assert {s: r.appended for s, r in reports.items()} == {"cf_prod": 1, "billing_prod": 1, "subs": 1}
    assert len(slots_of(world)) == 3
    again = set_up(world)
    assert all(r.already for r in again.values()) and event_count(world) == 3


def test_an_insert_an_update_and_a_delete_in_each_store_reach_the_log_once_each_timed_at_their_commit(world):
    set_up(world)
    started = datetime.now(UTC)
    execute(world["cf_prod"], "UPDATE accounts SET status = 'suspended'")  # updated_at stays 2026-03-01
    execute(world["billing_prod"], "INSERT INTO charges VALUES ('ch_1', 'acc_000042', 'inv_000042_01', NULL, 2900, "
            "'failed', 'card_declined', '2026-03-01Z')")
    execute(world["subs"], "DELETE FROM subs_customer")
    committed = datetime.now(UTC)
    for store in ("cf_prod", "billing_prod", "subs"):
        with a_stream(world, store) as stream:
            assert read_until(stream, lambda: False, limit=1.0) == 1
    events = events_of(world)[-3:]
    assert [(e.table, e.row is None) for e in events] == [("accounts", False), ("charges", False),
                                                           ("subs_customer", True)]
    assert events[0].row["status"] == "suspended"
    assert all(started <= e.source_time <= committed for e in events)
    assert all("/" in e.position for e in events)
