"""A small Stripe world with memorable defaults: one customer of acc_000042 with a subscription and an invoice."""

from __future__ import annotations

from simulation.stripe_world import StripeWorld

NOW = 1_772_323_200  # 2026-03-01T00:00:00Z
API_KEY = "sk_test_recompute"


def a_customer(customer_id="cus_42", account_id="acc_000042", created=NOW - 40 * 86_400) -> dict:
    return {"id": customer_id, "object": "customer", "created": created, "metadata": {"account_id": account_id}}


def an_invoice(invoice_id="in_42", customer_id="cus_42", status="open", attempt_count=1, created=NOW - 10 * 86_400,
               **transitions) -> dict:
    return {
        "id": invoice_id, "object": "invoice", "customer": customer_id, "status": status, "created": created,
        "amount_due": 2900, "amount_paid": 2900 if status == "paid" else 0, "currency": "usd",
        "attempt_count": attempt_count, "due_date": created + 5 * 86_400,
        "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_42"}},
        "status_transitions": {"finalized_at": created, "paid_at": None, "voided_at": None,
                               "marked_uncollectible_at": None, **transitions},
    }


def a_subscription(subscription_id="sub_42", customer_id="cus_42", status="active", created=NOW - 40 * 86_400) -> dict:
    return {"id": subscription_id, "object": "subscription", "customer": customer_id, "status": status,
            "created": created, "items": {"object": "list", "data": [
                {"id": "si_42", "object": "subscription_item", "current_period_end": NOW + 20 * 86_400}]}}


def an_event(event_id: str, event_type: str, obj: dict, created: int) -> dict:
    return {"id": event_id, "object": "event", "api_version": "2025-03-31.basil", "created": created,
            "type": event_type, "data": {"object": obj}, "livemode": False, "pending_webhooks": 0,
            "request": {"id": None, "idempotency_key": None}}


def a_world() -> StripeWorld:
    customer, subscription, invoice = a_customer(), a_subscription(), an_invoice()
    return StripeWorld(
        now=NOW,
        customers=[customer], subscriptions=[subscription], invoices=[invoice],
        events=[
            an_event("evt_sub_created", "customer.subscription.created", subscription, NOW - 20 * 86_400),
            an_event("evt_inv_finalized", "invoice.finalized", an_invoice(attempt_count=0), NOW - 10 * 86_400),
            an_event("evt_inv_failed", "invoice.payment_failed", invoice, NOW - 9 * 86_400),
        ],
    )
