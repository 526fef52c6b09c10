"""Reading Stripe objects in the current (basil) API shape and in older shapes.

Stripe moved fields between API versions; the fold must read both:

    invoice → subscription   basil: parent.subscription_details.subscription
                             older: top-level `subscription`
    subscription period end  basil: items.data[*].current_period_end
                             older: top-level `current_period_end`

Also here: how far along a status is, which breaks ties between observations of one object
made by events with the same `created` (rules-v1 §1).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

INVOICE_STATUS_RANK = {"draft": 0, "open": 1, "uncollectible": 2, "paid": 3, "void": 3}
SUBSCRIPTION_STATUS_RANK = {
    "incomplete": 0,
    "trialing": 1,
    "active": 2,
    "past_due": 3,
    "unpaid": 4,
    "paused": 4,
    "canceled": 5,
    "incomplete_expired": 5,
}
_DELETED_RANK = 9  # a deletion is further along than any status


def from_unix(value: Any) -> datetime | None:
    """A Stripe timestamp (unix seconds) as an aware UTC datetime; None stays None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(int(value), UTC)


def ref_id(value: Any) -> str | None:
    """The id of a reference that may be a plain id or an expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return None if value is None else str(value)


def invoice_subscription(invoice: dict[str, Any]) -> str | None:
    parent = invoice.get("parent")
    if isinstance(parent, dict):
        details = parent.get("subscription_details")
        if isinstance(details, dict) and details.get("subscription") is not None:
            return ref_id(details["subscription"])
    return ref_id(invoice.get("subscription"))


def subscription_period_end(subscription: dict[str, Any]) -> datetime | None:
    items = subscription.get("items")
    ends: list[Any] = []
    if isinstance(items, dict):
        ends = [i.get("current_period_end") for i in items.get("data") or () if isinstance(i, dict)]
        ends = [e for e in ends if e is not None]
    if ends:
        return from_unix(max(ends))
    return from_unix(subscription.get("current_period_end"))


def subscription_status(subscription: dict[str, Any], *, deleted: bool) -> str:
    status = subscription.get("status")
    if status is None and deleted:
        return "canceled"
    return str(status)


def progress(table: str, obj: dict[str, Any], *, deleted: bool) -> tuple[int, ...]:
    """How far along an observation is; compared only between observations with the same `created`.

    Invoices: the status rank, then attempt_count and amount_paid (both only grow), so that two
    same-second events about an open invoice keep the one with more attempts.
    """
    if deleted:
        return (_DELETED_RANK,)
    if table == "invoice":
        return (
            INVOICE_STATUS_RANK.get(obj.get("status"), -1),  # type: ignore[arg-type]
            int(obj.get("attempt_count") or 0),
            int(obj.get("amount_paid") or 0),
        )
    if table == "subscription":
        return (SUBSCRIPTION_STATUS_RANK.get(obj.get("status"), -1),)  # type: ignore[arg-type]
    return (0,)
