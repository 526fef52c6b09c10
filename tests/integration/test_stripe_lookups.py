"""A Stripe lookup that fails for good settles what waits for it; one object never fails `ingest`
(issue 18, defect 4). Stripe is a fake reader here (the boundary); the event store is real."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import stripe

from eventlog.own_tables import ensure_own_schema
from ingestion.stripe.ingester import StripeIngester
from tests.support.stores import eventstore_only
from tests.support.stripe_world import NOW, a_subscription, an_event

pytestmark = pytest.mark.integration

WAITING = an_event("evt_sub_new", "customer.subscription.created", a_subscription("sub_new", "cus_new"), NOW - 20)


class StripeAnswering:
    """Events as given; every customer lookup answers `customer` (a dict, None) or raises it."""

    def __init__(self, customer: Any, events: list[dict] = (WAITING,)) -> None:
        self.answer, self._events, self.lookups = customer, list(events), 0

    def events(self, *, created_gte: int | None) -> Iterator[dict]:
        return iter(self._events)

    def listed(self, object_type: str) -> Iterator[dict]:
        return iter(())

    def customer(self, customer_id: str) -> dict | None:
        self.lookups += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def waiting_and_parked(eventstore: str) -> tuple[int, list[tuple[str, str]]]:
    with psycopg.connect(eventstore) as conn:
        waiting = conn.execute("SELECT count(*) FROM parked_record WHERE waiting_for IS NOT NULL "
                               "AND resolved_at IS NULL AND given_up_at IS NULL").fetchone()[0]
        parked = conn.execute("SELECT key, reason FROM parked_record WHERE given_up_at IS NOT NULL "
                              "AND resolved_at IS NULL").fetchall()
    return waiting, parked


@pytest.fixture
def eventstore(stores):
    ensure_own_schema(stores["eventstore"])
    return stores["eventstore"]


NOT_FOUND = stripe.InvalidRequestError("Not Found", None, http_status=404)  # a 404 that names no code
FORBIDDEN = stripe.PermissionError("The provided key does not have access to customers", http_status=403)


@pytest.mark.parametrize(("answer", "why"), [
    (NOT_FOUND, "Stripe refused the lookup of customer cus_new (404 InvalidRequestError: Not Found)"),
    (FORBIDDEN, "(403 PermissionError: The provided key does not have access to customers)"),
    ({"id": "cus_new", "object": "customer", "deleted": True}, "customer cus_new is deleted"),
    (None, "customer cus_new does not exist in Stripe (resource_missing)"),
])
def test_an_object_whose_customer_lookup_fails_for_good_is_parked_with_why_and_ingest_goes_on(
        eventstore, answer, why):
    reader = StripeAnswering(answer)
    first = StripeIngester(reader=reader, stores=eventstore_only(eventstore)).run()  # no exception: not exit 1
    assert first.waiting == 0
    waiting, parked = waiting_and_parked(eventstore)
    assert waiting == 0 and len(parked) == 1 and parked[0][0] == "sub_new"
    assert parked[0][1].startswith("belongs to no account: ") and why in parked[0][1]
    again = StripeIngester(reader=reader, stores=eventstore_only(eventstore)).run()
    assert again.waiting == 0 and reader.lookups == 1  # settled: never asked about again


def test_an_object_given_up_on_is_still_recorded_if_a_delivery_later_names_its_customer_s_account(eventstore):
    reader = StripeAnswering(None)  # Stripe does not know the customer (yet)
    StripeIngester(reader=reader, stores=eventstore_only(eventstore)).run()
    named = an_event("evt_cus_new", "customer.created", {"id": "cus_new", "object": "customer", "created": NOW - 5,
                                                         "metadata": {"account_id": "acc_000077"}}, NOW - 5)
    StripeIngester(reader=None, stores=eventstore_only(eventstore)).record_deliveries([named])
    assert waiting_and_parked(eventstore) == (0, [])
    with psycopg.connect(eventstore) as conn:
        assert conn.execute("SELECT count(*) FROM recompute_events WHERE originator_id = 'acc_000077'").fetchone()[0] == 2


@pytest.mark.parametrize("answer", [
    stripe.APIConnectionError("connection refused"), stripe.APIError("boom", http_status=503),
    stripe.RateLimitError("slow down", http_status=429),
])
def test_an_object_whose_customer_lookup_fails_for_now_keeps_waiting_for_the_next_run(eventstore, answer):
    reader = StripeAnswering(answer)
    assert StripeIngester(reader=reader, stores=eventstore_only(eventstore)).run().waiting == 1
    reader.answer = {"id": "cus_new", "object": "customer", "metadata": {"account_id": "acc_000077"}}
    assert StripeIngester(reader=reader, stores=eventstore_only(eventstore)).run().waiting == 0
    assert waiting_and_parked(eventstore) == (0, [])
