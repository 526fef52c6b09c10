"""Stripe into the account event log, through the real stripe client and the Stripe stand-in."""

from __future__ import annotations

import psycopg
import pytest

from eventlog.account_log import open_log
from eventlog.own_tables import ensure_own_schema
from ingestion.stripe.ingester import StripeIngester
from ingestion.stripe.reader import StripeApiReader
from simulation.stripe_standin import StripeStandIn
from tests.support.stores import eventstore_only
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
    return StripeIngester(reader=reader, stores=eventstore_only(eventstore)).run()


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
        StripeIngester(reader=reader, stores=eventstore_only(eventstore)).run()
    assert stream(eventstore) == []


# -- nothing lost after parking, nothing lost on a failed lookup, one copy under racing deliveries --

def deliveries(eventstore):
    """An ingester that only takes deliveries (serve without STRIPE_API_KEY)."""
    return StripeIngester(reader=None, stores=eventstore_only(eventstore))


def recorded_ids(eventstore) -> list[str]:
    with psycopg.connect(eventstore) as conn:
        return [event_id for (event_id,) in conn.execute(
            "SELECT convert_from(state, 'UTF8')::jsonb ->> 'event_id' FROM recompute_events ORDER BY notification_id")]


NEW_CUSTOMER = a_customer("cus_new", "acc_000077", created=NOW - 30)
NEW_INVOICE_EVENT = an_event("evt_inv_new", "invoice.payment_failed", an_invoice("in_new", "cus_new"), NOW - 20)


def test_an_invoice_parked_for_an_unknown_customer_is_recorded_when_customer_created_maps_it(eventstore):
    deliveries(eventstore).record_deliveries([NEW_INVOICE_EVENT])
    assert recorded_ids(eventstore) == []
    deliveries(eventstore).record_deliveries([an_event("evt_cus_new", "customer.created", NEW_CUSTOMER, NOW - 30)])
    assert [e.event_id for e in stream(eventstore, "acc_000077")] == ["evt_cus_new", "evt_inv_new"]
    deliveries(eventstore).record_deliveries([NEW_INVOICE_EVENT])  # Stripe delivers it again
    assert sorted(recorded_ids(eventstore)) == ["evt_cus_new", "evt_inv_new"]


def test_an_invoice_lost_after_parking_by_an_older_version_is_recorded_by_the_next_run(stripe, eventstore):
    import orjson

    ingest(stripe, eventstore)
    with psycopg.connect(eventstore) as conn:  # what an older version left: parked, marked seen, then mapped
        conn.execute("DROP INDEX parked_record_waiting")  # and its tables as they were then
        conn.execute("ALTER TABLE parked_record DROP COLUMN waiting_for, DROP COLUMN via, DROP COLUMN resolved_at")
        conn.execute("INSERT INTO parked_record (source, tbl, key, reason, record, position) VALUES ('stripe', "
                     "'invoice', 'in_new', 'belongs to no account: customer cus_new has no metadata.account_id', "
                     "%s::jsonb, 'evt_inv_new')", (orjson.dumps(NEW_INVOICE_EVENT).decode(),))
        conn.execute("INSERT INTO stripe_event_seen (event_id, digest, created) VALUES ('evt_inv_new', '\\x00', now())")
        conn.execute("INSERT INTO stripe_customer_account VALUES ('cus_new', 'acc_000077')")
    ensure_own_schema(eventstore)  # the upgrade
    ingest(stripe, eventstore)
    assert [e.event_id for e in stream(eventstore, "acc_000077")] == ["evt_inv_new"]


def test_an_object_parked_for_no_account_is_recorded_by_the_next_run_once_its_customer_names_one(stripe, eventstore):
    ingest(stripe, eventstore)
    stripe.put_object("customer", {"id": "cus_new", "object": "customer", "created": NOW - 30, "metadata": {}})
    stripe.add_event(NEW_INVOICE_EVENT)
    assert ingest(stripe, eventstore).appended == 0
    stripe.put_object("customer", NEW_CUSTOMER)  # the account is named, and no event tells us
    assert ingest(stripe, eventstore).appended == 1
    assert [e.event_id for e in stream(eventstore, "acc_000077")] == ["evt_inv_new"]
    report = ingest(stripe, eventstore)
    assert (report.appended, report.waiting) == (0, 0)


def test_a_customer_created_read_in_a_later_run_records_the_invoice_parked_before(stripe, eventstore):
    ingest(stripe, eventstore)
    stripe.add_event(NEW_INVOICE_EVENT)  # Stripe does not know cus_new yet: the lookup finds nothing
    assert ingest(stripe, eventstore).appended == 0
    stripe.put_object("customer", NEW_CUSTOMER)
    stripe.add_event(an_event("evt_cus_new", "customer.created", NEW_CUSTOMER, NOW - 5))
    ingest(stripe, eventstore)
    assert sorted(e.event_id for e in stream(eventstore, "acc_000077")) == ["evt_cus_new", "evt_inv_new"]


def test_an_event_whose_customer_lookup_failed_is_recorded_by_the_rerun(stripe, eventstore):
    import stripe as stripe_lib

    ingest(stripe, eventstore)
    stripe.put_object("customer", NEW_CUSTOMER)
    stripe.add_event(NEW_INVOICE_EVENT)
    stripe.leave_unanswered("/v1/customers/")
    try:
        report = ingest(stripe, eventstore)
        assert (report.appended, report.waiting) == (0, 1)
    except stripe_lib.APIConnectionError:
        pass  # what the run did before it gave up stands; the rerun must find the event again
    assert stripe.unanswered_requests >= 1, "the lookup must have failed for this test to mean anything"
    stripe.leave_unanswered(None)
    ingest(stripe, eventstore)
    assert [e.event_id for e in stream(eventstore, "acc_000077")] == ["evt_inv_new"]


def test_one_new_event_delivered_8_times_at_once_is_recorded_once(eventstore):
    import threading

    deliveries(eventstore).record_deliveries([an_event("evt_c", "customer.created", a_customer(), NOW - 100)])
    invoice_event = an_event("evt_race", "invoice.payment_failed", an_invoice(), NOW - 50)
    ingester, start, errors = deliveries(eventstore), threading.Barrier(8), []

    def deliver():
        start.wait()
        try:
            ingester.record_deliveries([dict(invoice_event)])
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert recorded_ids(eventstore).count("evt_race") == 1
