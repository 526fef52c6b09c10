"""`recompute serve`: signed Stripe webhook deliveries are recorded once; unsigned ones are refused."""

from __future__ import annotations

import threading

import orjson
import psycopg
import pytest
import requests
import stripe

from ingestion.stripe_ingest import StripeIngester
from ingestion.webhook_server import WebhookApp, make_server
from recompute.ownschema import ensure_own_schema
from tests.support.stripe_world import NOW, a_customer, an_event, an_invoice

pytestmark = pytest.mark.integration
SECRET = "whsec_test_recompute"


@pytest.fixture
def server(stores):
    ensure_own_schema(stores["eventstore"])
    ingester = StripeIngester(reader=None, eventstore_dsn=stores["eventstore"])
    app = WebhookApp(ingester=ingester, eventstore_dsn=stores["eventstore"], secret=SECRET)
    httpd = make_server(app, "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", stores["eventstore"]
    httpd.shutdown()


def deliver(url: str, envelope: dict, secret: str = SECRET) -> requests.Response:
    body = orjson.dumps(envelope).decode()
    signature = stripe.WebhookSignature.generate_signature_header(body, secret)
    return requests.post(f"{url}/webhooks/stripe", data=body, timeout=10,
                         headers={"Stripe-Signature": signature, "Content-Type": "application/json"})


def recorded(eventstore: str) -> list[tuple[str, str]]:
    with psycopg.connect(eventstore) as conn:
        return conn.execute("SELECT originator_id, convert_from(state, 'UTF8')::jsonb ->> 'event_id' "
                            "FROM recompute_events ORDER BY notification_id").fetchall()


def test_a_signed_delivery_is_recorded_once_however_often_it_arrives(server):
    url, eventstore = server
    assert deliver(url, an_event("evt_c", "customer.created", a_customer(), NOW - 100)).json()["appended"] == 1
    invoice_event = an_event("evt_i", "invoice.payment_failed", an_invoice(), NOW - 50)
    assert deliver(url, invoice_event).json() == {"received": True, "appended": 1, "parked": 0}
    assert deliver(url, invoice_event).json() == {"received": True, "appended": 0, "parked": 0}
    assert recorded(eventstore) == [("acc_000042", "evt_c"), ("acc_000042", "evt_i")]


def test_a_delivery_with_a_bad_signature_is_refused_and_nothing_is_recorded(server):
    url, eventstore = server
    response = deliver(url, an_event("evt_c", "customer.created", a_customer(), NOW), secret="whsec_wrong")
    assert response.status_code == 400 and "signature" in response.json()["error"]
    assert recorded(eventstore) == []


def test_health_and_metrics_answer(server):
    url, _ = server
    assert requests.get(f"{url}/healthz", timeout=5).json() == {"status": "ok"}
    deliver(url, an_event("evt_c", "customer.created", a_customer(), NOW))
    metrics = requests.get(f"{url}/metrics", timeout=5).text
    assert "recompute_log_events 1" in metrics
    assert 'recompute_webhook_deliveries_total{status="200"} 1' in metrics
