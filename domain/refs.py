"""The one way to name an event: its reference ("ref"). Pure.

    evt_1000avIBZMJORe9KFV                          a Stripe event: its evt_ id, unique at Stripe
    billing_prod.invoices[inv_000042_07]@<position>  anything else: store.table[key]@position
    billing_prod.schedules[inv_000042_07/2]@<position>   a key of several columns: the values in the
                                                         table's key order (as recorded), joined by '/'
    stripe.invoice[in_1]@list@2026-03-01T00:00:00+00:00  a Stripe object seen by a list read (no evt_ id)

The position (where in the source's change stream the event was read: a snapshot, a list read) is
part of the ref, so that two observations of one row or object are two refs: a ref names one event.
`because`, the explain timeline, the audit's `causes` and the published events' `causes` all cite
events by `ref_of`; nothing else builds a ref.
"""

from __future__ import annotations

from typing import Any

from domain.events import AccountEvent, StripeObjectObserved


def key_text(key: dict[str, Any]) -> str:
    """A row's key as one string: the value, or the values in the key's (the table's) column order joined by '/'."""
    return "/".join(str(value) for value in key.values())


def ref_of(event: AccountEvent) -> str:
    """The event's ref: its evt_ id, or store.table[key]@position."""
    if isinstance(event, StripeObjectObserved) and event.event_id:
        return event.event_id
    return f"{event.store}.{event.table}[{key_text(event.key)}]@{event.position}"
