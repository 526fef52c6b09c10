"""Compact Stripe objects and event envelopes in the current API shape (`2025-03-31.basil`).

Shapes follow the real payloads in `shared/fixtures/stripe/` with the rarely used members left
out: invoices point at their subscription through `parent.subscription_details`, and a
subscription's `current_period_end` lives on `items.data[0]`. Every builder returns a fresh dict,
so an event's `data.object` is a snapshot that later changes do not touch.
"""

from __future__ import annotations

import random
import string
from typing import Any

API_VERSION = "2025-03-31.basil"
_B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


_PAIRS = [a + b for a in _B62 for b in _B62]


def b62(n: int, width: int) -> str:
    """`n` in base 62, `width` characters (width even or odd), most significant first."""
    out = []
    for _ in range(width // 2):
        n, r = divmod(n, 3844)
        out.append(_PAIRS[r])
    if width % 2:
        out.append(_B62[n % 62])
    return "".join(reversed(out))


def object_id(prefix: str, unique: int, rng: random.Random) -> str:
    """`prefix_` + 7 characters that make it unique + 10 that make it look like Stripe's."""
    return f"{prefix}_1{b62(unique, 7)}{b62(rng.getrandbits(59), 10)}"


def customer(cid: str, *, account_id: str, created: int, name: str, email: str, currency: str,
             payment_method: str | None) -> dict[str, Any]:
    return {
        "id": cid, "object": "customer", "balance": 0, "created": created,
        "currency": currency, "delinquent": False, "email": email, "invoice_prefix": cid[-8:].upper(),
        "invoice_settings": {"custom_fields": None, "default_payment_method": payment_method,
                             "footer": None, "rendering_options": None},
        "livemode": False, "metadata": {"account_id": account_id}, "name": name,
        "preferred_locales": ["en"], "tax_exempt": "none",
    }


def subscription_base(sid: str, *, customer_id: str, created: int, currency: str, plan: str,
                      trial: tuple[int, int] | None) -> dict[str, Any]:
    """The members of a subscription that never change; `subscription_state` adds the rest."""
    return {
        "id": sid, "object": "subscription", "billing_cycle_anchor": created,
        "cancel_at_period_end": False, "collection_method": "charge_automatically",
        "created": created, "currency": currency, "customer": customer_id, "livemode": False,
        "metadata": {"plan": plan}, "start_date": created,
        "trial_end": trial[1] if trial else None, "trial_start": trial[0] if trial else None,
    }


def subscription_item(item_id: str, *, subscription_id: str, created: int, price_id: str,
                      product_id: str, unit_amount: int, quantity: int, currency: str) -> dict[str, Any]:
    return {
        "id": item_id, "object": "subscription_item", "created": created,
        "quantity": quantity, "subscription": subscription_id,
        "price": {"id": price_id, "object": "price", "currency": currency,
                  "product": product_id, "type": "recurring", "unit_amount": unit_amount,
                  "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"}},
    }


def subscription_state(base: dict[str, Any], item: dict[str, Any], *, status: str, period_start: int,
                       period_end: int, latest_invoice: str | None, canceled_at: int | None,
                       ended_at: int | None) -> dict[str, Any]:
    """A subscription snapshot: `base` plus its status and current period (on the item, as in basil)."""
    return {
        **base, "status": status, "latest_invoice": latest_invoice, "canceled_at": canceled_at,
        "ended_at": ended_at,
        "items": {"object": "list", "has_more": False, "total_count": 1,
                  "data": [{**item, "current_period_start": period_start, "current_period_end": period_end}]},
    }


def invoice_base(iid: str, *, customer_id: str, subscription_id: str, number: str, created: int,
                 currency: str, amount_due: int, period_start: int, period_end: int,
                 billing_reason: str, line_id: str, description: str) -> dict[str, Any]:
    """The members of an invoice that never change; `invoice_state` adds the rest."""
    return {
        "id": iid, "object": "invoice", "amount_due": amount_due, "amount_overpaid": 0,
        "billing_reason": billing_reason, "collection_method": "charge_automatically",
        "created": created, "currency": currency, "customer": customer_id, "livemode": False,
        "metadata": {}, "number": number,
        "lines": {"object": "list", "has_more": False, "total_count": 1,
                  "data": [{"id": line_id, "object": "line_item", "amount": amount_due,
                            "currency": currency, "description": description,
                            "period": {"start": period_start, "end": period_end}}]},
        "parent": {"type": "subscription_details", "quote_details": None,
                   "subscription_details": {"subscription": subscription_id, "metadata": {}}},
        "period_end": period_end, "period_start": period_start,
        "subtotal": amount_due, "total": amount_due,
    }


def invoice_state(base: dict[str, Any], *, status: str, amount_paid: int, attempt_count: int,
                  due_date: int | None, next_payment_attempt: int | None, finalized_at: int | None,
                  paid_at: int | None = None, voided_at: int | None = None,
                  marked_uncollectible_at: int | None = None) -> dict[str, Any]:
    """An invoice snapshot: `base` plus what changes over its life."""
    return {
        **base, "status": status, "amount_paid": amount_paid,
        "amount_remaining": base["amount_due"] - amount_paid, "attempt_count": attempt_count,
        "attempted": attempt_count > 0, "auto_advance": status in ("draft", "open"),
        "due_date": due_date, "effective_at": finalized_at, "next_payment_attempt": next_payment_attempt,
        "status_transitions": {"finalized_at": finalized_at, "marked_uncollectible_at": marked_uncollectible_at,
                               "paid_at": paid_at, "voided_at": voided_at},
    }


DECLINES = {
    "card_declined": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
    "processing_error": "An error occurred while processing your card.",
}


def charge(chid: str, *, customer_id: str, amount: int, currency: str, created: int,
           succeeded: bool, failure_code: str | None, payment_intent: str,
           payment_method: str) -> dict[str, Any]:
    return {
        "id": chid, "object": "charge", "amount": amount, "amount_captured": amount if succeeded else 0,
        "amount_refunded": 0, "captured": succeeded, "created": created, "currency": currency,
        "customer": customer_id,
        "failure_code": failure_code, "failure_message": DECLINES.get(failure_code or ""),
        "livemode": False, "metadata": {},
        "outcome": {"network_status": "approved_by_network" if succeeded else "declined_by_network",
                    "reason": None if succeeded else "generic_decline",
                    "type": "authorized" if succeeded else "issuer_declined"},
        "paid": succeeded, "payment_intent": payment_intent, "payment_method": payment_method,
        "refunded": False, "status": "succeeded" if succeeded else "failed",
    }


def event(evt_id: str, etype: str, created: int, obj: dict[str, Any],
          previous_attributes: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    return {
        "id": evt_id, "object": "event", "api_version": API_VERSION, "created": created,
        "data": data, "livemode": False, "pending_webhooks": 0,
        "request": {"id": None, "idempotency_key": None}, "type": etype,
    }
