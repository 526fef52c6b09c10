"""The Stripe stand-in, driven by the real stripe-python client over HTTP.

The world is built from the captured payloads in shared/fixtures/stripe (re-dated to fall inside the
30-day window) plus synthetic events that share `created` seconds, so the id tie-break is exercised.
"""

from __future__ import annotations

import base64
import http.client
import json
from pathlib import Path

import orjson
import pytest
import stripe

from simulation.stripe_standin import DAY, StripeStandIn
from simulation.stripe_world import StripeWorld
from tests.support.fixtures import stripe_fixtures

FIXTURES = stripe_fixtures()
KEY = "sk_test_standin"
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
CAPTURES = [
    "real_captures/customer.subscription.created.supabase-sync-engine.json",
    "real_captures/customer.subscription.updated.supabase-sync-engine.json",
    "real_captures/customer.subscription.deleted.supabase-sync-engine.json",
    "real_captures/invoice.finalized.supabase-sync-engine.json",
    "real_captures/invoice.paid.supabase-sync-engine.json",
    "real_captures/invoice.voided.supabase-sync-engine.json",
    "real_captures/charge.failed.supabase-sync-engine.json",
    "real_captures/payment_intent.payment_failed.supabase-sync-engine.json",
    "derived/invoice.payment_failed.basil_envelope.json",
    "derived/invoice.marked_uncollectible.basil_envelope.json",
]


def fixture(name: str) -> dict:
    return orjson.loads((FIXTURES / name).read_bytes())


def captured_events() -> list[dict]:
    """The captures, an hour apart ending an hour before NOW; the voided capture gets its own id."""
    events = []
    for hours_ago, name in enumerate(CAPTURES, start=1):
        event = fixture(name)
        event["created"] = NOW - hours_ago * 3600
        if event["type"] == "invoice.voided":  # the capture reuses invoice.paid's id (see MANIFEST)
            event["id"] = "evt_voided_own_id"
        events.append(event)
    return events


def synthetic_event(n: int, created: int, type: str = "invoice.updated") -> dict:
    return {"id": f"evt_syn{n:04d}", "object": "event", "type": type, "created": created,
            "api_version": "2025-03-31.basil", "livemode": False, "pending_webhooks": 0,
            "data": {"object": {"id": f"in_syn{n % 7}", "object": "invoice", "status": "open"}}}


def synthetic_events() -> list[dict]:
    """60 events from ten days ago on, three to a second every ten hours, cycling through three types."""
    types = ("invoice.updated", "customer.updated", "charge.succeeded")
    return [synthetic_event(n, NOW - 10 * DAY + (n // 3) * 36_000, types[n % 3]) for n in range(60)]


def subscription(sid: str, customer: str, status: str, created: int) -> dict:
    return {**fixture("stripe_openapi_fixtures/subscription.json"), "id": sid, "customer": customer,
            "status": status, "created": created}


def invoice(iid: str, customer: str, status: str, created: int) -> dict:
    return {**fixture("stripe_openapi_fixtures/invoice.json"), "id": iid, "customer": customer,
            "status": status, "created": created}


def customer(cid: str, created: int) -> dict:
    return {**fixture("stripe_openapi_fixtures/customer.json"), "id": cid, "created": created,
            "metadata": {"account_id": f"acct-{cid}"}}


def a_world() -> StripeWorld:
    return StripeWorld(
        now=NOW,
        events=[*captured_events(), *synthetic_events(),
                synthetic_event(900, NOW - 30 * DAY, "invoice.paid"),       # the oldest Stripe still serves
                synthetic_event(901, NOW - 31 * DAY, "invoice.paid")],      # gone
        customers=[customer("cus_alice", NOW - 90 * DAY), customer("cus_bob", NOW - 60 * DAY),
                   {"id": "cus_gone", "object": "customer", "deleted": True}],
        subscriptions=[subscription("sub_alice_active", "cus_alice", "active", NOW - 80 * DAY),
                       subscription("sub_alice_old", "cus_alice", "canceled", NOW - 85 * DAY),
                       subscription("sub_bob_past_due", "cus_bob", "past_due", NOW - 50 * DAY),
                       subscription("sub_bob_expired", "cus_bob", "incomplete_expired", NOW - 55 * DAY)],
        invoices=[invoice(f"in_alice_{m}", "cus_alice", "paid", NOW - (80 - 30 * m) * DAY) for m in range(3)]
        + [invoice("in_bob_open", "cus_bob", "open", NOW - 20 * DAY)],
    )


def newest_first(events: list[dict], *, since: int = NOW - 30 * DAY) -> list[str]:
    kept = [e for e in events if e["created"] >= since]
    return [e["id"] for e in sorted(kept, key=lambda e: (e["created"], e["id"]), reverse=True)]


@pytest.fixture(scope="module")
def served():
    """A stand-in no test changes."""
    with StripeStandIn(a_world(), api_key=KEY) as standin:
        yield standin


@pytest.fixture
def standin():
    """A stand-in of the test's own, for tests that add events or objects."""
    with StripeStandIn(a_world(), api_key=KEY) as own:
        yield own


def client_of(standin: StripeStandIn, key: str = KEY) -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": standin.base_url}, max_network_retries=0)


def ids(items) -> list[str]:
    return [item.id for item in items]


# -- events ----------------------------------------------------------------------------------------

def test_paging_through_every_event_yields_the_30_day_window_newest_first(served):
    everything = newest_first(a_world().events)
    first = client_of(served).v1.events.list(params={"limit": 7})
    assert ids(first.data) == everything[:7] and first.has_more
    assert ids(first.auto_paging_iter()) == everything
    assert len(everything) == 71  # 10 captures, 60 synthetic, the 30-day-old one


def test_the_last_page_says_there_is_no_more(served):
    everything = newest_first(a_world().events)
    last = client_of(served).v1.events.list(params={"limit": 100, "starting_after": everything[-5]})
    assert ids(last.data) == everything[-4:] and not last.has_more


def test_ending_before_returns_the_page_just_newer_than_the_cursor(served):
    everything = newest_first(a_world().events)
    page = client_of(served).v1.events.list(params={"limit": 5, "ending_before": everything[20]})
    assert ids(page.data) == everything[15:20] and page.has_more
    top = client_of(served).v1.events.list(params={"limit": 5, "ending_before": everything[3]})
    assert ids(top.data) == everything[:3] and not top.has_more


def test_auto_paging_backwards_from_ending_before_walks_towards_the_newest(served):
    everything = newest_first(a_world().events)
    backwards = client_of(served).v1.events.list(params={"limit": 4, "ending_before": everything[30]})
    assert ids(backwards.auto_paging_iter()) == everything[:30][::-1]


@pytest.mark.parametrize("created, keep", [
    ({"gte": NOW - 5 * DAY}, lambda c: c >= NOW - 5 * DAY),
    ({"gt": NOW - 5 * DAY}, lambda c: c > NOW - 5 * DAY),
    ({"lt": NOW - 5 * DAY}, lambda c: c < NOW - 5 * DAY),
    ({"lte": NOW - 5 * DAY, "gt": NOW - 7 * DAY}, lambda c: NOW - 7 * DAY < c <= NOW - 5 * DAY),
    (NOW - 3600, lambda c: c == NOW - 3600),
])
def test_created_filters_bound_the_list(served, created, keep):
    expected = [i for i in newest_first(a_world().events)
                if keep(next(e["created"] for e in a_world().events if e["id"] == i))]
    listed = client_of(served).v1.events.list(params={"limit": 6, "created": created})
    assert ids(listed.auto_paging_iter()) == expected and expected


def test_type_filters_take_a_name_a_wildcard_or_a_list(served):
    world = a_world().events
    of_types = lambda *ts: newest_first([e for e in world if e["type"] in ts])  # noqa: E731
    client = client_of(served)
    assert ids(client.v1.events.list(params={"type": "charge.failed"}).data) == ["evt_3KtQThJDPojXS6LN0E06aNxq"]
    invoices = ids(client.v1.events.list(params={"type": "invoice.*", "limit": 3}).auto_paging_iter())
    assert invoices == newest_first([e for e in world if e["type"].startswith("invoice.")])
    chosen = ids(client.v1.events.list(
        params={"types": ["customer.subscription.created", "charge.succeeded"], "limit": 4}).auto_paging_iter())
    assert chosen == of_types("customer.subscription.created", "charge.succeeded")
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.events.list(params={"type": "invoice.*", "types": ["invoice.paid"]})
    assert refused.value.http_status == 400 and refused.value.param == "types"


def test_an_event_older_than_30_days_is_gone(served):
    client = client_of(served)
    assert client.v1.events.retrieve("evt_syn0900").type == "invoice.paid"
    with pytest.raises(stripe.InvalidRequestError) as gone:
        client.v1.events.retrieve("evt_syn0901")
    assert gone.value.http_status == 404 and gone.value.code == "resource_missing"
    listed = ids(client.v1.events.list(params={"created": {"lte": NOW - 30 * DAY}}).data)
    assert listed == ["evt_syn0900"]


def test_the_window_follows_world_now(standin):
    standin.world_now = NOW + DAY
    listed = ids(client_of(standin).v1.events.list(params={"limit": 100}).auto_paging_iter())
    assert "evt_syn0900" not in listed and listed == newest_first(a_world().events, since=NOW - 29 * DAY)


def test_a_late_event_is_found_by_a_client_paging_from_a_created_bound(standin):
    client = client_of(standin)
    seen = ids(client.v1.events.list(params={"limit": 100}).auto_paging_iter())
    late = synthetic_event(500, NOW - 2 * DAY, "invoice.payment_failed")  # older than events already served
    standin.add_event(late)
    since = ids(client.v1.events.list(params={"created": {"gte": NOW - 2 * DAY}}).auto_paging_iter())
    assert late["id"] in since and late["id"] not in seen


def test_a_new_event_appears_before_the_newest_seen_one(standin):
    client = client_of(standin)
    newest = client.v1.events.list(params={"limit": 1}).data[0].id
    standin.add_event(synthetic_event(501, NOW + 60, "invoice.paid"))
    assert ids(client.v1.events.list(params={"ending_before": newest}).data) == ["evt_syn0501"]


def test_adding_an_event_again_replaces_it_in_place(standin):
    client = client_of(standin)
    again = {**synthetic_events()[5], "pending_webhooks": 3}
    standin.add_event(again)
    everything = list(client.v1.events.list(params={"limit": 100}).auto_paging_iter())
    assert ids(everything) == newest_first(a_world().events)
    assert next(e for e in everything if e.id == "evt_syn0005").pending_webhooks == 3


def test_a_cursor_naming_no_event_is_refused(served):
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client_of(served).v1.events.list(params={"starting_after": "evt_nope"})
    assert (refused.value.http_status, refused.value.code, refused.value.param) == \
        (400, "resource_missing", "starting_after")


@pytest.mark.parametrize("limit", [0, 101, "ten"])
def test_limit_must_be_between_1_and_100(served, limit):
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client_of(served).v1.events.list(params={"limit": limit})
    assert refused.value.http_status == 400 and refused.value.param == "limit"


def test_an_unknown_parameter_is_refused(served):
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client_of(served).v1.events.list(params={"delivery_success": False})
    assert refused.value.http_status == 400 and refused.value.param == "delivery_success"


# -- objects ---------------------------------------------------------------------------------------

def test_subscriptions_list_leaves_out_canceled_ones_unless_asked(served):
    client = client_of(served)
    assert ids(client.v1.subscriptions.list().data) == ["sub_bob_past_due", "sub_bob_expired", "sub_alice_active"]
    assert ids(client.v1.subscriptions.list(params={"status": "all"}).data) == \
        ["sub_bob_past_due", "sub_bob_expired", "sub_alice_active", "sub_alice_old"]
    assert ids(client.v1.subscriptions.list(params={"status": "ended"}).data) == ["sub_bob_expired", "sub_alice_old"]
    assert ids(client.v1.subscriptions.list(params={"status": "canceled"}).data) == ["sub_alice_old"]
    assert ids(client.v1.subscriptions.list(params={"customer": "cus_alice", "status": "all"}).data) == \
        ["sub_alice_active", "sub_alice_old"]


def test_invoices_page_newest_first_and_filter_by_customer(served):
    client = client_of(served)
    every = client.v1.invoices.list(params={"limit": 2})
    assert ids(every.data) == ["in_bob_open", "in_alice_2"] and every.has_more
    assert ids(every.auto_paging_iter()) == ["in_bob_open", "in_alice_2", "in_alice_1", "in_alice_0"]
    assert ids(client.v1.invoices.list(params={"customer": "cus_alice", "created": {"gte": NOW - 60 * DAY}}).data) \
        == ["in_alice_2", "in_alice_1"]


def test_a_deleted_customer_is_retrievable_but_not_listed(served):
    client = client_of(served)
    assert ids(client.v1.customers.list().data) == ["cus_bob", "cus_alice"]
    gone = client.v1.customers.retrieve("cus_gone")
    assert gone.deleted is True and gone.id == "cus_gone"
    assert client.v1.customers.retrieve("cus_alice").metadata["account_id"] == "acct-cus_alice"


@pytest.mark.parametrize("kind, oid, noun", [
    ("customers", "cus_x", "customer"), ("subscriptions", "sub_x", "subscription"),
    ("invoices", "in_x", "invoice"), ("events", "evt_x", "event")])
def test_an_unknown_id_is_a_stripe_404(served, kind, oid, noun):
    with pytest.raises(stripe.InvalidRequestError) as missing:
        getattr(client_of(served).v1, kind).retrieve(oid)
    error = missing.value
    assert (error.http_status, error.code, error.param) == (404, "resource_missing", "id")
    assert error.json_body["error"]["message"] == f"No such {noun}: '{oid}'"
    assert error.json_body["error"]["type"] == "invalid_request_error"


def test_putting_a_canceled_subscription_moves_it_out_of_the_default_list(standin):
    client = client_of(standin)
    standin.put_object("subscription", subscription("sub_bob_past_due", "cus_bob", "canceled", NOW - 50 * DAY))
    standin.put_object("customers", {"id": "cus_bob", "object": "customer", "deleted": True})
    assert ids(client.v1.subscriptions.list().data) == ["sub_bob_expired", "sub_alice_active"]
    assert ids(client.v1.customers.list().data) == ["cus_alice"]
    assert client.v1.subscriptions.retrieve("sub_bob_past_due").status == "canceled"
    with pytest.raises(ValueError, match="unknown kind 'charges'"):
        standin.put_object("charges", {"id": "ch_1"})


# -- the wire --------------------------------------------------------------------------------------

def test_a_wrong_key_is_a_stripe_401(served):
    with pytest.raises(stripe.AuthenticationError) as refused:
        client_of(served, key="sk_test_wrongkey").v1.events.list()
    assert refused.value.http_status == 401
    assert refused.value.json_body == {"error": {"type": "invalid_request_error",
                                                 "message": "Invalid API Key provided: sk_test_****gkey"}}


def raw_get(standin: StripeStandIn, connection: http.client.HTTPConnection, path: str,
            headers: dict[str, str]) -> tuple[int, dict]:
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def test_basic_auth_with_the_key_as_user_is_accepted_and_no_key_is_a_401(served):
    host, port = served.base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    basic = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    status, body = raw_get(served, connection, "/v1/customers?limit=1", {"Authorization": basic})
    assert status == 200 and body["data"][0]["id"] == "cus_bob"
    status, body = raw_get(served, connection, "/v1/customers", {})
    assert status == 401 and body["error"]["message"].startswith("You did not provide an API key.")
    connection.close()


def test_one_connection_serves_many_requests_and_unknown_urls_are_stripe_404s(served):
    host, port = served.base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    auth = {"Authorization": f"Bearer {KEY}"}
    status, body = raw_get(served, connection, "/v1/events?limit=3", auth)
    assert status == 200 and body["object"] == "list" and body["url"] == "/v1/events" and body["has_more"]
    socket_before = connection.sock
    status, body = raw_get(served, connection, "/v1/charges", auth)
    assert status == 404 and body["error"]["type"] == "invalid_request_error"
    assert connection.sock is socket_before  # kept alive across both answers
    connection.close()


def test_a_world_with_two_different_events_under_one_id_is_refused():
    paid, voided = fixture(CAPTURES[4]), fixture(CAPTURES[5])
    assert paid["id"] == voided["id"]
    with pytest.raises(ValueError, match="two different bodies under one id 'evt_1KJrGtJDPojXS6LN15fcthM3'"):
        StripeStandIn(StripeWorld(now=NOW, events=[paid, voided]), api_key=KEY)


def test_the_standalone_script_serves_a_saved_world(tmp_path):
    import subprocess
    import sys

    a_world().save(tmp_path)
    script = Path(__file__).resolve().parents[2] / "scripts" / "stripe_standin.py"
    server = subprocess.Popen([sys.executable, str(script), "--world", str(tmp_path), "--api-key", KEY],
                              stdout=subprocess.PIPE, text=True)
    try:
        base_url = server.stdout.readline().strip()
        client = stripe.StripeClient(KEY, base_addresses={"api": base_url}, max_network_retries=0)
        assert ids(client.v1.events.list(params={"limit": 100}).auto_paging_iter()) == \
            newest_first(a_world().events)
    finally:
        server.terminate()
        assert server.wait(timeout=10) == 0
