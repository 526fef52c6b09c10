"""Turns what Stripe sends into observations of one object, or says why it cannot (pure).

Two inputs: an event envelope (Events API or webhook) and an object read from a list endpoint.
Both the older API shape (`invoice.subscription` at the top level) and the current one
(`invoice.parent.subscription_details.subscription`, `items.data[].current_period_end`) carry the
object whole; the fold reads either. Only object types that decide or mention account state are
recorded; anything else is rejected with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

RECORDED_TYPES = ("customer", "subscription", "invoice", "charge", "payment_intent")

# Timestamps an object carries that say when something already happened to it (not due dates).
_PAST_TIMESTAMPS = ("created", "canceled_at", "ended_at", "start_date", "effective_at", "webhooks_delivered_at")
_PAST_TRANSITIONS = ("finalized_at", "paid_at", "voided_at", "marked_uncollectible_at")


@dataclass(frozen=True)
class Observation:
    object_type: str
    object: dict[str, Any]
    deleted: bool
    source_time: datetime
    account_id: str | None  # known from the object itself (a customer's metadata)
    customer_id: str | None  # the customer it points at, to find the account
    event_id: str | None = None
    event_type: str | None = None
    event_created: datetime | None = None
    previous_attributes: dict[str, Any] | None = None  # what the change changed, as it was before


@dataclass(frozen=True)
class Rejection:
    reason: str


def translate_event(envelope: Any) -> Observation | Rejection:
    if not isinstance(envelope, dict) or envelope.get("object") != "event":
        return Rejection("not a Stripe event envelope (no \"object\": \"event\")")
    event_id, event_type, created = envelope.get("id"), envelope.get("type"), envelope.get("created")
    if not isinstance(event_id, str) or not event_id.startswith("evt_"):
        return Rejection(f"event has no evt_ id: {event_id!r}")
    if not isinstance(event_type, str):
        return Rejection(f"event {event_id} has no type")
    if not isinstance(created, int) or isinstance(created, bool):
        return Rejection(f"event {event_id} has no integer 'created': {created!r}")
    data = envelope.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        return Rejection(f"event {event_id} ({event_type}) has no data.object")
    observed = _observe(obj, deleted=event_type == "customer.deleted" or bool(obj.get("deleted")))
    if isinstance(observed, Rejection):
        return Rejection(f"event {event_id} ({event_type}): {observed.reason}")
    at = datetime.fromtimestamp(created, UTC)
    before = data.get("previous_attributes") if isinstance(data, dict) else None
    return Observation(
        object_type=observed.object_type, object=obj, deleted=observed.deleted, source_time=at,
        account_id=observed.account_id, customer_id=observed.customer_id,
        event_id=event_id, event_type=event_type, event_created=at,
        previous_attributes=before if isinstance(before, dict) else None,
    )


def translate_listed(obj: Any, *, read_at: datetime) -> Observation | Rejection:
    """An object from a list endpoint: it holds since the latest timestamp it carries, never after the read."""
    if not isinstance(obj, dict):
        return Rejection("listed item is not an object")
    observed = _observe(obj, deleted=bool(obj.get("deleted")))
    if isinstance(observed, Rejection):
        return observed
    return Observation(
        object_type=observed.object_type, object=obj, deleted=observed.deleted,
        source_time=min(latest_timestamp(obj) or read_at, read_at),
        account_id=observed.account_id, customer_id=observed.customer_id,
    )


def latest_timestamp(obj: dict[str, Any]) -> datetime | None:
    stamps = [obj.get(name) for name in _PAST_TIMESTAMPS]
    transitions = obj.get("status_transitions")
    if isinstance(transitions, dict):
        stamps += [transitions.get(name) for name in _PAST_TRANSITIONS]
    seconds = [s for s in stamps if isinstance(s, int) and not isinstance(s, bool)]
    return datetime.fromtimestamp(max(seconds), UTC) if seconds else None


def _observe(obj: dict[str, Any], *, deleted: bool) -> Observation | Rejection:
    object_type = obj.get("object")
    if object_type not in RECORDED_TYPES:
        return Rejection(f"object type {object_type!r} is not one recompute records ({', '.join(RECORDED_TYPES)})")
    object_id = obj.get("id")
    if not isinstance(object_id, str) or not object_id:
        return Rejection(f"{object_type} has no id")
    if object_type == "customer":
        metadata = obj.get("metadata")
        account = metadata.get("account_id") if isinstance(metadata, dict) else None
        return Observation(object_type, obj, deleted, _EPOCH, account if isinstance(account, str) and account else None,
                           object_id)
    customer = obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    if not isinstance(customer, str) or not customer:
        return Rejection(f"{object_type} {object_id} points at no customer, so at no account")
    return Observation(object_type, obj, deleted, _EPOCH, None, customer)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
