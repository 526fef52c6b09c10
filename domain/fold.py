"""The fold: an account's events, as of an instant, into its facts.

    fold(events, as_of=T) -> AccountFacts        pure: data in, data out

Inside, `evolve(event, builder) -> builder` is a singledispatch over the event classes that
updates a private mutable `FactsBuilder` (domain/facts_builder.py: plain dicts, no validation:
this loop runs for every event of every account); `resolve_facts` resolves the authority table of
rules-v1 §1 once at the end (domain/authority.py). An event class without an `evolve` raises `UnknownEvent`.

`fold(events, as_of=T, legacy=False)` is the fold `plan` runs: it leaves out the events no rule
reads (`read_by_truth`: subs_* rows, billing_prod.schedules and .dunning, Stripe charges and
payment intents) and the observed legacy rows (`facts.legacy` is empty, `events_folded` counts
the events it read); everything the truth reads is identical. `explain` keeps them (its drift is
against the rows as recorded).

FOLD_VERSION names what this code makes of a stream. The read model keeps facts per account
(projections/evaluation/kept_facts.py) and uses them only when they were made by this version:
bump it (any new string) in the commit that changes what `fold` or `resolve_facts` return for
some stream, or the shape of `AccountFacts`, or the set `read_by_truth` keeps. A refactoring that
returns equal facts for every stream keeps it.

Order: exactly the events with source_time <= T, sorted by (source_time, originator_version);
Python's sort is stable, so events that tie on both keep the order they were given in.
Stripe observations of one object then compete by event `created`, and those of one second by
rules-v1 §1 (domain/same_second.py: previous_attributes, event type, status), decided on the set
of them whatever order they arrive in; an evt_ id counts once (the first one folded).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from datetime import datetime
from functools import singledispatch
from operator import attrgetter

from domain.authority import resolve_facts, resolve_history
from domain.events import CATALOG_STREAM, AccountEvent, LegacyRowObserved, StripeObjectObserved
from domain.facts import AccountFacts, row_key
from domain.facts_builder import BILLING_CHARGES, BILLING_INVOICES, FactsBuilder, parse_time
from domain.same_second import latest

FOLD_VERSION = "2"  # 2: same-second Stripe observations by rules-v1 §1 (issue 18)

# What the truth (domain/truth.py via domain/authority.py) reads: every other table is only observed.
TRUTH_READS = frozenset({
    ("cf_prod", "accounts"), ("cf_prod", "entitlements"), ("billing_prod", "invoices"), ("billing_prod", "charges"),
    ("stripe", "invoice"), ("stripe", "customer"), ("stripe", "subscription"),
})


def read_by_truth(event: AccountEvent) -> bool:
    """Whether some rule reads this event (its table is in TRUTH_READS)."""
    return (event.store, event.table) in TRUTH_READS


_TRUTH_TABLE = re.compile(b'"table":"(?:' + b"|".join(
    re.escape(table.encode()) for table in sorted({t for _, t in TRUTH_READS})) + b')"')
_ANY_TABLE = b'"table":"'


def may_be_read_by_truth(state: bytes) -> bool:
    """On an event's stored state (its JSON, eventlog/account_log.encode_event), before decoding
    it: False only when `read_by_truth` is surely False (no false negatives; a True is settled by
    `read_by_truth` after decoding, as `fold(legacy=False)` does anyway).

    The state is compact JSON (orjson, as pydantic would write it): its top-level `table` reads
    `"table":"<name>"`, and these bytes cannot occur inside a JSON string (a quote in a string is
    escaped). So a state naming no table of TRUTH_READS that way is not read; one with no
    `"table":"` at all (some other spacing) is kept for the decoder to judge."""
    return _TRUTH_TABLE.search(state) is not None or _ANY_TABLE not in state


class UnknownEvent(TypeError):
    """The fold was given an event class it has no rule for."""


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
    current = facts.stripe.get(key)
    if current is not None and created < current[0]:
        return facts
    ties = facts.stripe_ties[key] + [event] if current is not None and created == current[0] else [event]
    facts.stripe_ties[key] = ties  # every observation with the greatest `created` so far
    facts.stripe[key] = (created, latest(ties))
    if event.table == "invoice":
        for invoice_id in sorted(facts.sid_invoices.get(event.object_id, ())):
            facts.touch(invoice_id, event)
    return facts


_sort_key = attrgetter("source_time", "originator_version")  # (source_time, originator_version), in C


def fold(events: Iterable[AccountEvent], *, as_of: datetime, legacy: bool = True) -> AccountFacts:
    """The account's facts as of `as_of`: exactly its events with source_time <= as_of (with
    legacy=False only those some rule reads, and without the observed rows `facts.legacy`)."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must be an aware datetime (with an offset)")
    return Folding([e for e in events if e.source_time <= as_of], legacy=legacy).facts_at(as_of)


class Folding:
    """`fold` at one instant after another, each event evolved once: `facts_at(t)` for ascending t
    (or any t not before the last event it evolved: `reaches`) equals `fold(events, as_of=t,
    legacy=legacy)` (what domain/drift.py's walk over an account's instants needs: a fold per
    instant would evolve the stream's prefix again each time).
    `advance(t)` evolves up to t without resolving the facts; `fork()` is an independent Folding
    at the same point (the walk carries one fold to where each of its chunks starts)."""

    __slots__ = ("_events", "_builder", "_next", "_first", "_legacy", "_stream")

    def __init__(self, events: Iterable[AccountEvent], *, legacy: bool = True) -> None:
        given = list(events)
        self._first = min((e.source_time for e in given), default=None)  # legacy=False: the stream is the account
        self._stream = given[0].originator_id if given else None
        self._legacy = legacy
        self._events = sorted(given if legacy else [e for e in given if (e.store, e.table) in TRUTH_READS],
                              key=_sort_key)
        self._builder = FactsBuilder()
        self._next = 0

    def advance(self, as_of: datetime) -> None:
        if not self.reaches(as_of):
            raise ValueError(f"facts_at goes forward: {as_of} is before an event it evolved or its first event")
        builder, events = self._builder, self._events
        if (not self._legacy and builder.account_id is None and self._first is not None and self._first <= as_of
                and self._stream != CATALOG_STREAM):
            builder.account_id = self._stream
        # singledispatch's choice without its wrapper: a class registered as itself is looked up directly
        i, registered, dispatch = self._next, evolve.registry.get, evolve.dispatch
        try:
            while i < len(events):
                event = events[i]
                if event.source_time > as_of:
                    break
                cls = event.__class__
                builder = (registered(cls) or dispatch(cls))(event, builder)
                i += 1
        finally:
            self._next = i
        self._builder = builder

    def facts_at(self, as_of: datetime, *, only: Collection[str] | None = None) -> AccountFacts:
        """`only`: those fields of the facts alone (authority.resolve_facts)."""
        self.advance(as_of)
        return resolve_facts(self._builder, as_of, legacy=self._legacy, only=only)

    def extend(self, events: Iterable[AccountEvent]) -> bool:
        """Adds events of the same stream that come after every one given so far (higher versions),
        so that `facts_at` goes on as a Folding of all of them would. False, and nothing changed,
        when one of them sorts before an event already evolved (its source_time is earlier than
        that event's: the fold must start again from the first event). The events list is made
        anew, never changed in place: a fork made before keeps its own."""
        given = list(events)
        if not given:
            return True
        truth = given if self._legacy else [e for e in given if (e.store, e.table) in TRUTH_READS]
        if self._next and truth and min(e.source_time for e in truth) < self._events[self._next - 1].source_time:
            return False
        first = min(e.source_time for e in given)
        self._first = first if self._first is None else min(self._first, first)
        if self._stream is None:
            self._stream = given[0].originator_id
        self._events = self._events[:self._next] + sorted([*self._events[self._next:], *truth], key=_sort_key)
        return True

    def reaches(self, as_of: datetime) -> bool:
        """Whether `facts_at(as_of)` may be asked: not before an event it evolved. (Every event not
        evolved sorts after every one evolved, so a fold asked at an earlier instant than the last
        one, but not before the last event it evolved, evolves exactly the events up to it.)"""
        if self._next:
            return as_of >= self._events[self._next - 1].source_time
        # nothing evolved: only the account id may be set (legacy=False: from the first event's time)
        return self._builder.account_id is None or self._first is None or as_of >= self._first

    def fork(self) -> Folding:
        other = Folding.__new__(Folding)
        other._events, other._next = self._events, self._next
        other._first, other._legacy, other._stream = self._first, self._legacy, self._stream
        resolve_history(self._builder)  # the history's changes made once, for both to share
        other._builder = self._builder.copy()
        return other
