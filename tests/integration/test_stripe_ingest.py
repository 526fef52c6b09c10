"""Stripe into the account event log, through the real stripe client and the Stripe stand-in."""

from __future__ import annotations

import psycopg
import pytest

from ingestion.stripe_ingest import StripeIngester
from ingestion.stripe_reader import StripeApiReader
from recompute.eventlog import open_log
from recompute.ownschema import ensure_own_schema
from simulation.stripe_standin import StripeStandIn
from tests.support.stripe_world import API_KEY, NOW, a_customer, a_world, an_event, an_invoice

pytestmark = pytest.mark.integration


@pytest.fixture
def stripe():
    with StripeStandIn(a_world(), api_key=API_KEY) as standin:
        yield standin


@pytest.fixture
def eventstore(stores):
    ensure_own_schema(stores["eventstore"])
    return stores["eventstore"]


def ingest(stripe, eventstore):
    reader = StripeApiReader(api_key=API_KEY, api_base=stripe.base_url, max_network_retries=0)
    return StripeIngester(reader=reader, eventstore_dsn=eventstore).run()


def stream(eventstore, account="acc_000042"):
    log = open_log(eventstore)
    try:
        return log.stream(account)
    finally:
        log.close()


def parked(eventstore):
    with psycopg.connect(eventstore) as conn:
        return conn.execute("SELECT tbl, key, reason FROM parked_record ORDER BY id").fetchall()


def test_the_first_run_lists_current_objects_then_reads_every_event(stripe, eventstore):
    report = ingest(stripe, eventstore)
    assert report.appended == 6
    events = stream(eventstore)
    assert [(e.via, e.table) for e in events] == [
        ("list", "customer"), ("list", "subscription"), ("list", "invoice"),
        ("events_api", "subscription"), ("events_api", "invoice"), ("events_api", "invoice")]
    assert {e.event_id for e in events if e.event_id} == {"evt_sub_created", "evt_inv_finalized", "evt_inv_failed"}
    failed = next(e for e in events if e.event_id == "evt_inv_failed")
    assert failed.source_time.timestamp() == NOW - 9 * 86_400
    assert failed.object["attempt_count"] == 1


def test_a_second_run_appends_nothing(stripe, eventstore):
    ingest(stripe, eventstore)
    assert ingest(stripe, eventstore).appended == 0


def test_events_delivered_twice_and_out_of_order_are_recorded_once_each(stripe, eventstore):
    ingest(stripe, eventstore)
    paid = an_event("evt_inv_paid", "invoice.paid", an_invoice(status="paid", paid_at=NOW - 60), NOW - 60)
    late = an_event("evt_inv_failed_again", "invoice.payment_failed", an_invoice(attempt_count=2), NOW - 600)
    stripe.add_event(paid)
    assert ingest(stripe, eventstore).appended == 1
    stripe.add_event(late)  # created before the newest event already read: it arrived late
    stripe.add_event(paid)  # and Stripe delivers the paid one again
    assert ingest(stripe, eventstore).appended == 1
    assert ingest(stripe, eventstore).appended == 0
    recorded = [e.event_id for e in stream(eventstore) if e.event_id]
    assert sorted(recorded) == sorted(
        ["evt_sub_created", "evt_inv_finalized", "evt_inv_failed", "evt_inv_paid", "evt_inv_failed_again"])


def test_the_same_event_id_with_another_body_is_parked_as_a_conflict(stripe, eventstore):
    ingest(stripe, eventstore)
    edited = an_event("evt_inv_failed", "invoice.voided", an_invoice(status="void"), NOW - 9 * 86_400)
    stripe.add_event(edited)
    assert ingest(stripe, eventstore).appended == 0
    [(table, key, reason)] = parked(eventstore)
    assert (table, key) == ("event", "evt_inv_failed")
    assert "different body; the first one stands" in reason


def test_an_event_of_a_customer_not_yet_seen_is_routed_by_asking_stripe(stripe, eventstore):
    ingest(stripe, eventstore)
    stripe.put_object("customer", a_customer("cus_77", "acc_000077", created=NOW - 30))
    stripe.add_event(an_event("evt_other", "invoice.finalized", an_invoice("in_77", "cus_77"), NOW - 10))
    assert ingest(stripe, eventstore).appended == 1
    assert [e.event_id for e in stream(eventstore, "acc_000077")] == ["evt_other"]


def test_an_object_whose_customer_names_no_account_is_parked(stripe, eventstore):
    ingest(stripe, eventstore)
    stripe.put_object("customer", {"id": "cus_anon", "object": "customer", "created": NOW - 30, "metadata": {}})
    stripe.add_event(an_event("evt_anon", "invoice.finalized", an_invoice("in_anon", "cus_anon"), NOW - 10))
    assert ingest(stripe, eventstore).appended == 0
    [(table, key, reason)] = parked(eventstore)
    assert (table, key) == ("invoice", "in_anon") and "belongs to no account" in reason


def test_a_wrong_api_key_fails_with_the_clients_own_error_and_records_nothing(stripe, eventstore):
    import stripe as stripe_lib

    reader = StripeApiReader(api_key="sk_test_wrong", api_base=stripe.base_url, max_network_retries=0)
    with pytest.raises(stripe_lib.AuthenticationError):
        StripeIngester(reader=reader, eventstore_dsn=eventstore).run()
    assert stream(eventstore) == []
