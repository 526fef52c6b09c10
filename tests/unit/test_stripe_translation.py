"""Every payload in shared/fixtures/stripe is translated into an observation, or rejected with a reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ingestion.stripe.translate import Observation, Rejection, translate_event, translate_listed
from tests.support.fixtures import stripe_fixtures

FIXTURES = stripe_fixtures()
READ_AT = datetime(2026, 11, 24, tzinfo=UTC)

# file -> what it must become: ("event" | "object", object type) or ("rejected", words in the reason)
EXPECTED = {
    "derived/invoice.marked_uncollectible.basil_envelope.json": ("event", "invoice"),
    "derived/invoice.payment_failed.basil_envelope.json": ("event", "invoice"),
    "real_captures/charge.failed.supabase-sync-engine.json": ("event", "charge"),
    "real_captures/customer.subscription.created.supabase-sync-engine.json": ("event", "subscription"),
    "real_captures/customer.subscription.deleted.supabase-sync-engine.json": ("event", "subscription"),
    "real_captures/customer.subscription.updated.supabase-sync-engine.json": ("event", "subscription"),
    "real_captures/invoice.finalized.supabase-sync-engine.json": ("event", "invoice"),
    "real_captures/invoice.paid.supabase-sync-engine.json": ("event", "invoice"),
    "real_captures/invoice.updated.supabase-sync-engine.json": ("event", "invoice"),
    "real_captures/invoice.voided.supabase-sync-engine.json": ("event", "invoice"),
    # customer: null, so no account can be found for it
    "real_captures/payment_intent.payment_failed.supabase-sync-engine.json": ("rejected", "points at no customer"),
    "real_captures/invoice_payment.paid.supabase-sync-engine.json": ("rejected", "'invoice_payment' is not one"),
    "stripe_openapi_fixtures/event.json": ("rejected", "'plan' is not one recompute records"),
    # data-only captures and bare objects are not events; their objects read like list results
    "real_captures/charge.updated.pay-rails.data_only.json": ("object", "charge"),
    "real_captures/invoice.payment_action_required.pay-rails.data_only.json": ("object", "invoice"),
    "real_captures/invoice.payment_failed.pay-rails.data_only.json": ("object", "invoice"),
    "real_captures/invoice.updated.pay-rails.data_only.json": ("rejected", "'invoice_payment' is not one"),
    "stripe_openapi_fixtures/charge.json": ("rejected", "points at no customer"),
    "stripe_openapi_fixtures/customer.json": ("object", "customer"),
    "stripe_openapi_fixtures/invoice.json": ("object", "invoice"),
    "stripe_openapi_fixtures/payment_intent.json": ("rejected", "points at no customer"),
    "stripe_openapi_fixtures/subscription.json": ("object", "subscription"),
    "stripe_openapi_fixtures/invoice_payment.json": ("rejected", "'invoice_payment' is not one"),
    "stripe_openapi_fixtures/mandate.json": ("rejected", "'mandate' is not one"),
    "stripe_openapi_fixtures/payment_method.json": ("rejected", "'payment_method' is not one"),
    "stripe_openapi_fixtures/subscription_item.json": ("rejected", "'subscription_item' is not one"),
}


def load(name: str):
    return json.loads((FIXTURES / name).read_text())


def translate(payload):
    if payload.get("object") == "event":
        return translate_event(payload)
    obj = payload["object"] if isinstance(payload.get("object"), dict) else payload
    return translate_listed(obj, read_at=READ_AT)


def test_every_fixture_is_listed_here():
    on_disk = {str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*.json")}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_fixture_is_translated_or_rejected_with_a_reason(name):
    kind, detail = EXPECTED[name]
    result = translate(load(name))
    if kind == "rejected":
        assert isinstance(result, Rejection)
        assert detail in result.reason
        return
    assert isinstance(result, Observation), getattr(result, "reason", result)
    assert result.object_type == detail
    assert result.source_time <= READ_AT
    assert (result.event_id is not None) == (kind == "event")


def test_an_event_is_timed_by_its_created_and_keeps_the_whole_object():
    envelope = load("real_captures/invoice.paid.supabase-sync-engine.json")
    result = translate_event(envelope)
    assert result.source_time == datetime.fromtimestamp(envelope["created"], UTC)
    assert result.object == envelope["data"]["object"]
    assert result.customer_id == envelope["data"]["object"]["customer"]


def test_a_listed_object_holds_since_the_latest_timestamp_it_carries():
    invoice = load("real_captures/invoice.payment_failed.pay-rails.data_only.json")["object"]
    result = translate_listed(invoice, read_at=READ_AT)
    assert result.source_time == datetime.fromtimestamp(invoice["status_transitions"]["finalized_at"], UTC)


def test_a_listed_object_is_never_timed_after_the_read():
    invoice = {"id": "in_1", "object": "invoice", "customer": "cus_1", "created": int(READ_AT.timestamp()) + 99}
    assert translate_listed(invoice, read_at=READ_AT).source_time == READ_AT


def test_a_customer_names_its_account_in_metadata():
    customer = {"id": "cus_1", "object": "customer", "created": 1, "metadata": {"account_id": "acc_000042"}}
    assert translate_listed(customer, read_at=READ_AT).account_id == "acc_000042"


def test_a_deleted_customer_event_observes_a_deletion():
    envelope = {"id": "evt_1", "object": "event", "type": "customer.deleted", "created": 5,
                "data": {"object": {"id": "cus_1", "object": "customer", "metadata": {"account_id": "acc_1"}}}}
    assert translate_event(envelope).deleted is True


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        ({"object": "event", "id": "x", "type": "invoice.paid", "created": 1, "data": {}}, "no evt_ id"),
        ({"object": "event", "id": "evt_1", "type": "invoice.paid", "created": "soon", "data": {}}, "no integer"),
        ({"object": "event", "id": "evt_1", "type": "invoice.paid", "created": 1, "data": {}}, "no data.object"),
        ({"object": "event", "id": "evt_1", "type": "invoice.paid", "created": 1,
          "data": {"object": {"id": "in_1", "object": "invoice"}}}, "points at no customer"),
        ({"id": "evt_1"}, "not a Stripe event envelope"),
    ],
)
def test_a_malformed_event_is_rejected_with_what_is_wrong(envelope, reason):
    result = translate_event(envelope)
    assert isinstance(result, Rejection) and reason in result.reason
