"""The facts recorded in the account event log.

Every event is a past-tense fact about one source record, and says where it came from:

    store        cf_prod | billing_prod | subs | stripe
    table        the legacy table, or the Stripe object type (invoice, customer, ...)
    key          the row's primary key, or {"id": <Stripe object id>}
    position     where in the source's change stream it was read (snapshot id, evt_ id, list read)
    source_time  when the change happened at the source: this, and only this, decides "as of T"
    recorded_at  when recompute appended it (kept for audit; never decides state)

`originator_id` is the stream: an account id, or CATALOG_STREAM for rows that belong to every
account (`cf_prod.product_config`). `originator_version` numbers the stream from 1.

Row and object values are plain JSON: timestamps are ISO 8601 strings with offset, money is an
integer in minor units. A legacy row that disappeared is recorded with `row = None`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from domain.legacy_tables import LegacyStore

CATALOG_STREAM = "catalog:product_config"

StripeObjectType = Literal["customer", "subscription", "invoice", "charge", "payment_intent"]


class AccountEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    originator_id: str
    originator_version: int
    store: str
    table: str
    key: dict[str, Any]
    position: str
    source_time: AwareDatetime
    recorded_at: AwareDatetime

    @property
    def timestamp(self) -> datetime:
        """The eventsourcing library's name for when the event was recorded."""
        return self.recorded_at


class LegacyRowObserved(AccountEvent):
    """A legacy row was seen new or changed (`row`), or seen gone (`row is None`)."""

    store: LegacyStore
    row: dict[str, Any] | None


class StripeObjectObserved(AccountEvent):
    """Stripe told us the state of one object, by an event (`event_id`) or a list read."""

    store: Literal["stripe"] = "stripe"
    table: StripeObjectType
    object: dict[str, Any]
    deleted: bool = False
    event_id: str | None = None
    event_type: str | None = None
    event_created: AwareDatetime | None = None
    previous_attributes: dict[str, Any] | None = None  # the event's data.previous_attributes (rules-v1 §1)
    via: Literal["events_api", "webhook", "list"]

    @property
    def object_id(self) -> str:
        return str(self.key["id"])
