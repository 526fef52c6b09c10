"""Against a Stripe emulator that is not ours: localstripe (PyPI) as a process, driven with
stripe-python, read by its signed webhooks (`/_config/webhooks`), its list endpoints and its Events
API. After ingest and apply, every Stripe-derived column of rules-v1 §3 holds what localstripe's own
API lists, for every account it knows (issue 18).

What localstripe does not do, so not covered here: it sends no `previous_attributes`, no
`invoice.paid`, `invoice.voided`, `invoice.finalized` or `customer.subscription.updated` events
(a voided invoice is seen through the list endpoints only), and retries no failed payment
(attempt_count stays 1)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import psycopg
import pytest
import requests

from domain.rules import RULES_V1
from eventlog.own_tables import ensure_own_schema
from eventlog.stores import Stores
from ingestion.legacy.snapshot import LegacySnapshotIngester
from ingestion.stripe.ingester import StripeIngester
from ingestion.stripe.reader import StripeApiReader
from projections.apply.protocol import ApplyOptions, apply
from tests.support.follow import a_calm_world
from tests.support.legacy import execute
from tests.support.localstripe import API_KEY, client, localstripe
from tests.support.serve import SECRET, serve_env, served

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GOOD, DECLINED = "4242424242424242", "4000000000000341"  # localstripe: attaches, then charging is declined


def at_the_start_of_a_second() -> None:
    """So that what follows happens within one second of Stripe's clock."""
    time.sleep(1 - time.time() % 1 + 0.01)


def a_customer(stripe, account: str, card: str | None = GOOD, *, named_later: bool = False) -> str:
    if named_later:  # checkout: created bare, given its account at once (the same second)
        at_the_start_of_a_second()
        customer = stripe.v1.customers.create(params={"email": f"{account}@example.com"})
        stripe.v1.customers.update(customer.id, params={"metadata": {"account_id": account}})
    else:
        customer = stripe.v1.customers.create(params={"email": f"{account}@example.com",
                                                      "metadata": {"account_id": account}})
    if card is not None:
        method = stripe.v1.payment_methods.create(params={"type": "card", "card": {
            "number": card, "exp_month": 12, "exp_year": 2030, "cvc": "123"}})
        stripe.v1.payment_methods.attach(method.id, params={"customer": customer.id})
        stripe.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": method.id}})
    return customer.id


def a_stripe_world(stripe) -> None:
    product = stripe.v1.products.create(params={"name": "Pro"})
    stripe.v1.plans.create(params={"id": "pro", "amount": 2900, "currency": "usd", "interval": "month",
                                   "product": product.id})

    def subscribe(customer: str):
        return stripe.v1.subscriptions.create(params={"customer": customer, "items": [{"plan": "pro"}]})

    subscribe(a_customer(stripe, "acc_000001", named_later=True))  # paid, active
    subscribe(a_customer(stripe, "acc_000002", DECLINED))  # declined: open, incomplete
    voided = subscribe(a_customer(stripe, "acc_000003", DECLINED))
    stripe.v1.invoices.void_invoice(voided.latest_invoice)  # declined, then voided
    gone = a_customer(stripe, "acc_000004", card=None)
    stripe.v1.customers.delete(gone)  # a deleted customer: no customer of acc_000004 any more
    subscribe(a_customer(stripe, "acc_000005"))
    subscribe(a_customer(stripe, "acc_000005", DECLINED, named_later=True))  # its latest subscription


def listed(base: str, path: str, **params) -> list[dict]:
    """Everything of a list endpoint, as localstripe's own API lists it."""
    items, after = [], None
    while True:
        page = requests.get(f"{base}{path}", params={"limit": 100, **params, **({"starting_after": after} if after
                                                                                else {})},
                            auth=(API_KEY, ""), timeout=10).json()
        items += page["data"]
        if not page["has_more"]:
            return items
        after = page["data"][-1]["id"]


def stripe_says(base: str) -> dict[str, dict]:
    """Per account named by a customer: the columns of rules-v1 §3 that Stripe decides."""
    customers = [c for c in listed(base, "/v1/customers") if (c.get("metadata") or {}).get("account_id")]
    account_of = {c["id"]: c["metadata"]["account_id"] for c in customers}
    said: dict[str, dict] = {}
    for c in sorted(customers, key=lambda c: (c["created"], c["id"]), reverse=True):  # the earliest last: it wins
        said.setdefault(account_of[c["id"]], {"invoices": {}})["stripe_customer_id"] = c["id"]
    for s in sorted(listed(base, "/v1/subscriptions", status="all"), key=lambda s: (s["created"], s["id"])):
        if s["customer"] in account_of:  # the latest created last: it wins
            said[account_of[s["customer"]]]["subscription"] = (
                s["id"], s["status"], datetime.fromtimestamp(s["current_period_end"], UTC))
    for i in listed(base, "/v1/invoices"):
        if i["customer"] in account_of:
            said[account_of[i["customer"]]]["invoices"][i["id"]] = (
                i["status"], i["amount_paid"], i["amount_due"] - i["amount_paid"], i["attempt_count"])
    return said


def the_stores_say(dsns: dict[str, str], accounts: list[str]) -> dict[str, dict]:
    said: dict[str, dict] = {}
    with psycopg.connect(dsns["subs"]) as subs, psycopg.connect(dsns["billing_prod"]) as billing:
        for account in accounts:
            mine: dict = {"invoices": {}}
            customers = [c for (c,) in subs.execute(
                "SELECT stripe_customer_id FROM subs_customer WHERE account_id = %s ORDER BY id", (account,))]
            if customers:
                mine["stripe_customer_id"] = customers[0] if len(customers) == 1 else customers
            row = subs.execute("SELECT stripe_subscription_id, status, current_period_end FROM subs_subscription "
                               "WHERE account_id = %s", (account,)).fetchone()
            if row:
                mine["subscription"] = row
            for sid, _status, remaining, attempts in subs.execute(
                    "SELECT stripe_invoice_id, status, amount_remaining, attempt_count FROM subs_invoice "
                    "WHERE account_id = %s", (account,)):
                billed = billing.execute("SELECT status, amount_paid FROM invoices WHERE stripe_invoice_id = %s",
                                         (sid,)).fetchone()
                mine["invoices"][sid] = (*(billed or (None, None)), remaining, attempts)
            said[account] = mine
    return said


def billing_knows(dsns: dict[str, str], base: str) -> None:
    """billing_prod has each Stripe invoice (as sent, still open, nothing paid): the drift to correct."""
    customers = {c["id"]: (c.get("metadata") or {}).get("account_id") for c in listed(base, "/v1/customers")}
    for n, invoice in enumerate(listed(base, "/v1/invoices")):
        if customers.get(invoice["customer"]):
            execute(dsns["billing_prod"], "INSERT INTO invoices VALUES (%s, %s, %s, 'open', 'usd', %s, 0, "
                    "now() + interval '20 days', now(), now())",
                    (f"inv_{n:03d}", customers[invoice["customer"]], invoice["id"], invoice["amount_due"]))
    execute(dsns["subs"], "INSERT INTO subs_customer (account_id, stripe_customer_id, source, created_at) VALUES "
            "('acc_000002', 'cus_wrong', 'setup', now()), ('acc_000004', 'cus_deleted_one', 'setup', now())")


def seen_ids(eventstore: str) -> set[str]:
    with psycopg.connect(eventstore) as conn:
        return {event_id for (event_id,) in conn.execute("SELECT event_id FROM stripe_event_seen")}


def test_every_stripe_derived_column_equals_what_localstripe_lists_for_every_account_it_knows(stores):
    accounts = a_calm_world(stores, accounts=5)
    ensure_own_schema(stores["eventstore"])
    with localstripe() as base, served(serve_env(stores)) as receiver:
        requests.post(f"{base}/_config/webhooks/recompute", data={
            "url": f"{receiver.url}/webhooks/stripe", "secret": SECRET}, auth=(API_KEY, ""), timeout=10)
        a_stripe_world(client(base))
        events = {e["id"] for e in listed(base, "/v1/events")}
        deadline = time.monotonic() + 60
        while not events <= seen_ids(stores["eventstore"]) and time.monotonic() < deadline:
            time.sleep(0.3)  # localstripe signs and sends each event a second after it happened
        assert events <= seen_ids(stores["eventstore"]), "every event came by webhook"
        billing_knows(stores, base)
        for store in ("cf_prod", "billing_prod", "subs"):
            LegacySnapshotIngester(store=store, stores=Stores.from_dsns(stores)).run()
        reader = StripeApiReader(api_key=API_KEY, api_base=base, max_network_retries=0)
        report = StripeIngester(reader=reader, stores=Stores.from_dsns(stores)).run()  # lists, then events
        assert report.waiting == 0 and report.rows_read >= len(events)
        result = apply(Stores.from_dsns(stores), RULES_V1, datetime.now(UTC), ApplyOptions(force=True, workers=1))
        assert result.count("applied") > 0 and result.count("stale") == 0

        expected = stripe_says(base)
        assert set(expected) == {"acc_000001", "acc_000002", "acc_000003", "acc_000005"}  # 4: deleted
        stored = the_stores_say(stores, accounts)
        for account, says in expected.items():
            assert stored[account] == says, account
        assert stored["acc_000004"]["stripe_customer_id"] == "cus_deleted_one"  # no customer: not compared
        assert expected["acc_000001"]["subscription"][1] == "active"
        assert sorted(s for s, *_ in expected["acc_000003"]["invoices"].values()) == ["void"]
