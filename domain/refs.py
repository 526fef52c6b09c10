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

For people, `short_refs` names each ref of one account's timeline shortly, the same way wherever
it is shown (the explain timeline, `because`, past corrections, the HTML report):

    evt_1000avIBZMJORe9KFV          a Stripe event: as it is
    invoices[inv_000042_07]#2       the second observation (in timeline order) of that row
    stripe.invoice[in_1]#1          a Stripe object seen by a list read

The store is left out of a legacy table's name (the names are unique across the stores); the
position becomes the observation's number among the timeline's observations of that row or object.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from domain.events import AccountEvent, StripeObjectObserved


def key_text(key: dict[str, Any]) -> str:
    """A row's key as one string: the value, or the values in the key's (the table's) column order joined by '/'."""
    if len(key) == 1:  # most keys: the value itself (what the join gives, without it)
        for value in key.values():
            return str(value)
    return "/".join([str(value) for value in key.values()])


def ref_of(event: AccountEvent) -> str:
    """The event's ref: its evt_ id, or store.table[key]@position."""
    if isinstance(event, StripeObjectObserved) and event.event_id:
        return event.event_id
    return f"{event.store}.{event.table}[{key_text(event.key)}]@{event.position}"


def short_refs(refs: Iterable[str]) -> dict[str, str]:
    """Each ref of one account's timeline (in timeline order) -> its short form (module docstring).

    A ref seen twice keeps its first number; refs outside the timeline have no short form here
    (callers show those as they are, see `shorten`)."""
    short: dict[str, str] = {}
    seen: dict[str, int] = {}
    for ref in refs:
        if ref in short:
            continue
        name = _row_name(ref)
        if name is None:
            short[ref] = ref
            continue
        seen[name] = seen.get(name, 0) + 1
        short[ref] = f"{name}#{seen[name]}"
    return short


def shorten(ref: str, short: Mapping[str, str]) -> str:
    """`ref` in its short form when `short` (from `short_refs`) knows it, else as it is."""
    return short.get(ref, ref)


def _row_name(ref: str) -> str | None:
    """store.table[key]@position -> table[key] (stripe.<object>[id] keeps its store); None for an evt_ id."""
    end = ref.rfind("]@")
    start = ref.find("[")
    if end < 0 or start < 0 or start > end:
        return None
    store, _, table = ref[:start].partition(".")
    if not table:
        return None
    return f"{store + '.' if store == 'stripe' else ''}{table}{ref[start:end + 1]}"
