"""The fold: an account's events, as of an instant, into its facts.

    fold(events, as_of=T) -> AccountFacts        pure: data in, data out

Inside, `evolve(event, builder) -> builder` is a singledispatch over the event classes that
updates a private mutable `FactsBuilder` (plain dicts, no validation: this loop runs for every
event of every account); `FactsBuilder.freeze` resolves the authority table of rules-v1 §1 once at
the end (domain/authority.py). An event class without an `evolve` raises `UnknownEvent`.

Order: exactly the events with source_time <= T, sorted by (source_time, originator_version);
Python's sort is stable, so events that tie on both keep the order they were given in.
Stripe observations of one object then compete by (event created, status progress), whatever
order they arrive in, and an evt_ id counts once (the first one folded).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import singledispatch
from typing import Any

from domain.events import AccountEvent, CATALOG_STREAM, LegacyRowObserved, StripeObjectObserved
from domain.facts import AccountFacts, row_key
from domain.stripe_shapes import progress

BILLING_INVOICES = ("billing_prod", "invoices")
BILLING_CHARGES = ("billing_prod", "charges")


class UnknownEvent(TypeError):
    """The fold was given an event class it has no rule for."""


def parse_time(value: Any) -> datetime | None:
    """A JSON timestamp (ISO 8601 with offset) as a datetime; None stays None."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


class FactsBuilder:
    """The fold's private, mutable accumulator. Not shared, not returned by `fold`."""

    __slots__ = ("account_id", "count", "rows", "stripe", "seen_event_ids", "invoice_sid",
                 "sid_invoices", "invoice_due", "charge_invoice", "invoice_charges",
                 "dunning_now", "history")

    def __init__(self, account_id: str | None = None) -> None:
        self.account_id = account_id
        self.count = 0
        self.rows: dict[tuple[str, str], dict[str, LegacyRowObserved]] = {}
        self.stripe: dict[tuple[str, str], tuple[tuple, StripeObjectObserved]] = {}
        self.seen_event_ids: set[str] = set()
        self.invoice_sid: dict[str, str | None] = {}
        self.sid_invoices: dict[str, set[str]] = {}
        self.invoice_due: dict[str, datetime | None] = {}
        self.charge_invoice: dict[str, str | None] = {}
        self.invoice_charges: dict[str, dict[str, LegacyRowObserved]] = {}
        self.dunning_now: dict[str, tuple] = {}
        self.history: list[tuple[datetime, str, tuple | None, AccountEvent]] = []

    def freeze(self, as_of: datetime) -> AccountFacts:
        from domain.authority import resolve_facts

        return resolve_facts(self, as_of)

    # -- the invoice view that the dunning rules read ---------------------------------------
    def true_invoice(self, invoice_id: str) -> tuple[Any, Any, int, StripeObjectObserved | None] | None:
        """(status, amount_paid, attempt_count, deciding Stripe observation) by rules-v1 §1."""
        billing = self.rows.get(BILLING_INVOICES, {}).get(invoice_id)
        if billing is None:
            return None
        sid = self.invoice_sid.get(invoice_id)
        if sid:
            seen = self.stripe.get(("invoice", sid))
            if seen is not None and not seen[1].deleted:
                obj = seen[1].object
                return obj.get("status"), obj.get("amount_paid"), int(obj.get("attempt_count") or 0), seen[1]
        row = billing.row or {}
        return row.get("status"), row.get("amount_paid"), len(self.invoice_charges.get(invoice_id, ())), None

    def touch(self, invoice_id: str | None, event: AccountEvent) -> None:
        """Record a change of the invoice's (status, due_at, attempt_count), if there was one."""
        if invoice_id is None:
            return
        true = self.true_invoice(invoice_id)
        view = None if true is None else (true[0], self.invoice_due.get(invoice_id), true[2])
        if self.dunning_now.get(invoice_id) != view:
            self.dunning_now[invoice_id] = view  # type: ignore[assignment]
            self.history.append((event.source_time, invoice_id, view, event))


@singledispatch
def evolve(event: AccountEvent, facts: FactsBuilder) -> FactsBuilder:
    raise UnknownEvent(f"the fold has no rule for {type(event).__name__}")


@evolve.register
def _legacy_row(event: LegacyRowObserved, facts: FactsBuilder) -> FactsBuilder:
    facts.count += 1
    if facts.account_id is None and event.originator_id != CATALOG_STREAM:
        facts.account_id = event.originator_id
    table = (event.store, event.table)
    key = row_key(event.key)
    rows = facts.rows.get(table)
    if rows is None:
        rows = facts.rows[table] = {}
    if event.row is None:
        rows.pop(key, None)
    else:
        rows[key] = event
    if table == BILLING_INVOICES:
        _invoice_row(facts, key, event)
    elif table == BILLING_CHARGES:
        _charge_row(facts, key, event)
    return facts


def _invoice_row(facts: FactsBuilder, invoice_id: str, event: LegacyRowObserved) -> None:
    row = event.row or {}
    old_sid = facts.invoice_sid.get(invoice_id)
    sid = row.get("stripe_invoice_id") if event.row is not None else None
    if sid != old_sid:
        if old_sid:
            facts.sid_invoices.get(old_sid, set()).discard(invoice_id)
        if sid:
            facts.sid_invoices.setdefault(sid, set()).add(invoice_id)
        facts.invoice_sid[invoice_id] = sid
    facts.invoice_due[invoice_id] = parse_time(row.get("due_at"))
    facts.touch(invoice_id, event)


def _charge_row(facts: FactsBuilder, charge_id: str, event: LegacyRowObserved) -> None:
    old = facts.charge_invoice.get(charge_id)
    new = event.row.get("invoice_id") if event.row is not None else None
    if old is not None:
        facts.invoice_charges.get(old, {}).pop(charge_id, None)
    if new is not None:
        facts.invoice_charges.setdefault(new, {})[charge_id] = event
    facts.charge_invoice[charge_id] = new
    facts.touch(old, event)
    if new != old:
        facts.touch(new, event)


@evolve.register
def _stripe_object(event: StripeObjectObserved, facts: FactsBuilder) -> FactsBuilder:
    facts.count += 1
    if facts.account_id is None:
        facts.account_id = event.originator_id
    if event.event_id is not None:
        if event.event_id in facts.seen_event_ids:
            return facts
        facts.seen_event_ids.add(event.event_id)
    key = (event.table, event.object_id)
    created = event.event_created if event.event_id is not None and event.event_created else event.source_time
    order = (created, progress(event.table, event.object, deleted=event.deleted))
    current = facts.stripe.get(key)
    if current is not None and order < current[0]:
        return facts
    facts.stripe[key] = (order, event)
    if event.table == "invoice":
        for invoice_id in sorted(facts.sid_invoices.get(event.object_id, ())):
            facts.touch(invoice_id, event)
    return facts


def _sort_key(event: AccountEvent) -> tuple[datetime, int]:
    return event.source_time, event.originator_version


def fold(events: Iterable[AccountEvent], *, as_of: datetime) -> AccountFacts:
    """The account's facts as of `as_of`: exactly its events with source_time <= as_of."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must be an aware datetime (with an offset)")
    chosen = sorted((e for e in events if e.source_time <= as_of), key=_sort_key)
    builder = FactsBuilder()
    for event in chosen:
        builder = evolve(event, builder)
    return builder.freeze(as_of)
