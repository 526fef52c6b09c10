"""The fold's private, mutable accumulator, and the invoice view the dunning rules read.

`domain/fold.py` fills a `FactsBuilder` event by event; `domain/authority.py` resolves it into
frozen `AccountFacts`. Its own module so that neither of the two imports the other's internals.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.events import AccountEvent, LegacyRowObserved, StripeObjectObserved
from domain.facts import AccountFact, DunningChange, InvoiceFact

BILLING_INVOICES = ("billing_prod", "invoices")
BILLING_CHARGES = ("billing_prod", "charges")


def parse_time(value: Any) -> datetime | None:
    """A JSON timestamp (ISO 8601 with offset) as a datetime; None stays None."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


class FactsBuilder:
    """The fold's private, mutable accumulator. Not shared, not returned by `fold`."""

    __slots__ = ("account_id", "count", "rows", "stripe", "stripe_ties", "seen_event_ids", "invoice_sid",
                 "sid_invoices", "invoice_due", "charge_invoice", "invoice_charges",
                 "dunning_now", "history", "resolved_history", "invoice_facts", "stripe_facts", "account_fact")

    def __init__(self, account_id: str | None = None) -> None:
        self.account_id = account_id
        self.count = 0
        self.rows: dict[tuple[str, str], dict[str, LegacyRowObserved]] = {}
        self.stripe: dict[tuple[str, str], tuple[datetime, StripeObjectObserved]] = {}  # created, the latest
        self.stripe_ties: dict[tuple[str, str], list[StripeObjectObserved]] = {}  # all at that `created`
        self.seen_event_ids: set[str] = set()
        self.invoice_sid: dict[str, str | None] = {}
        self.sid_invoices: dict[str, set[str]] = {}
        self.invoice_due: dict[str, datetime | None] = {}
        self.charge_invoice: dict[str, str | None] = {}
        self.invoice_charges: dict[str, dict[str, LegacyRowObserved]] = {}
        self.dunning_now: dict[str, tuple[Any, ...] | None] = {}
        self.history: list[tuple[datetime, str, tuple[Any, ...] | None, AccountEvent]] = []
        # What resolve_facts made of it so far, for the next resolve of this builder (domain/fold.Folding
        # resolves one instant after another): `history`'s changes (it only grows), the invoices not
        # touched since (`touch` drops theirs), each Stripe object's fact and the account's with the
        # observation it is of.
        self.resolved_history: list[DunningChange] = []
        self.invoice_facts: dict[str, InvoiceFact] = {}
        self.stripe_facts: dict[tuple[str, str], tuple[StripeObjectObserved, Any]] = {}
        self.account_fact: tuple[LegacyRowObserved, AccountFact] | None = None  # and the observation it is of

    def copy(self) -> FactsBuilder:
        """An independent builder at the same point: what evolving mutates in place (the dicts, sets
        and lists) is copied, the frozen events and facts they hold are shared. (`Folding.fork`: the
        drift walk carries one fold to where each of its chunks starts.)"""
        other = FactsBuilder(self.account_id)
        other.count = self.count
        other.rows = {table: dict(rows) for table, rows in self.rows.items()}
        other.stripe = dict(self.stripe)
        other.stripe_ties = dict(self.stripe_ties)  # each list is replaced, never appended to
        other.seen_event_ids = set(self.seen_event_ids)
        other.invoice_sid = dict(self.invoice_sid)
        other.sid_invoices = {sid: set(invoices) for sid, invoices in self.sid_invoices.items()}
        other.invoice_due = dict(self.invoice_due)
        other.charge_invoice = dict(self.charge_invoice)
        other.invoice_charges = {invoice: dict(charges) for invoice, charges in self.invoice_charges.items()}
        other.dunning_now = dict(self.dunning_now)
        other.history = list(self.history)
        other.resolved_history = list(self.resolved_history)
        other.invoice_facts = dict(self.invoice_facts)
        other.stripe_facts = dict(self.stripe_facts)
        other.account_fact = self.account_fact
        return other

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
        """Something the invoice's fact reads changed (its row, a charge of it, its Stripe invoice):
        forget its fact, and record a change of its (status, due_at, attempt_count) if there was one."""
        if invoice_id is None:
            return
        self.invoice_facts.pop(invoice_id, None)
        true = self.true_invoice(invoice_id)
        view = None if true is None else (true[0], self.invoice_due.get(invoice_id), true[2])
        if self.dunning_now.get(invoice_id) != view:
            self.dunning_now[invoice_id] = view
            self.history.append((event.source_time, invoice_id, view, event))
