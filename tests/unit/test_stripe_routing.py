"""Routing Stripe observations to accounts through their customer (pure)."""

from __future__ import annotations

from ingestion.stripe.routing import route, route_deferred
from ingestion.stripe.translate import translate_event
from tests.support.stripe_world import NOW, a_customer, an_event, an_invoice


def observed(*envelopes):
    return [(e["id"], translate_event(e)) for e in envelopes]


INVOICE = an_event("evt_i", "invoice.payment_failed", an_invoice("in_1", "cus_1"), NOW - 10)
CUSTOMER = an_event("evt_c", "customer.created", a_customer("cus_1", "acc_000001"), NOW - 20)


def test_an_object_of_a_known_customer_goes_to_its_account():
    routing = route(observed(INVOICE), {"cus_1": "acc_000001"})
    assert [(item, account) for item, _, account in routing.routed] == [("evt_i", "acc_000001")]
    assert routing.learned == {} and routing.deferred == []


def test_a_customer_read_after_its_invoice_routes_it_once_the_batch_is_read():
    routing = route(observed(INVOICE, CUSTOMER), {})
    assert routing.learned == {"cus_1": "acc_000001"} and routing.waits_for() == {"cus_1"}
    assert route_deferred(routing, {}) == []
    assert sorted(item for item, _, _ in routing.routed) == ["evt_c", "evt_i"]


def test_an_object_whose_customer_names_no_account_waits_for_that_customer():
    routing = route(observed(INVOICE), {})
    assert [item for item, _ in route_deferred(routing, {})] == ["evt_i"]
    assert routing.routed == []


def test_a_mapping_already_known_is_not_learned_again():
    assert route(observed(CUSTOMER), {"cus_1": "acc_000001"}).learned == {}
