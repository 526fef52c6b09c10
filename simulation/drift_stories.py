"""A fleet whose drift has known origins: each account lives one story, written with its times.

    fleet = story_fleet(per_story=4, start=S)
    fleet.phases        the legacy writes of each phase, each at its instant (SQL per store)
    fleet.stripe        the Stripe world (customers, invoices, events with their `created`)
    fleet.expected      per correction the story makes: cause, owner, instant and ref (the manifest)
    fleet.rewrite(D)    the rewrite phase, once the projector has corrected those accounts

The stories (S is the start; the phases follow it by seconds, so a change stream, which times a
change by its commit, sees the same history as snapshots of rows timed by `updated_at`):

    wrong_write       A3 writes subs_dunning.stage = 'retrying' at B for an account in good standing
    duplicate         checkout (A2) writes a second subs_customer row at B: a wrong write to delete
    invoice_paid      retrying since its invoice fell due; Stripe's invoice.paid at P (evt_…), and
                      every dunning, flag and invoice row left behind: missed changes by that event
    overdue_3_days    an invoice falls due 3 days before X with no attempt: grace, then at X retrying
                      (rule:retrying@X); the rows written at S stay in grace: missed changes
    never_written     an invoice falls due after S, then a payment fails: retrying; no dunning row in
                      either store was ever written: billing's missing since it fell due
                      (rule:grace@due), subs_dunning's since the invoice was known (its next_action_at)
    rewritten         as wrong_write; the projector corrects it (apply), then A3 writes 'retrying'
                      again at D: overwrote_correction, rewrites 1

A legacy write's ref is the reader's (`store.table[key]@position`: a snapshot id or an LSN), so the
manifest gives its `store.table[key]` and its instant; Stripe events and crossings are exact refs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from simulation.stripe_objects import customer, event, invoice_base, invoice_state
from simulation.stripe_world import StripeWorld

DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
STORIES = ("wrong_write", "duplicate", "invoice_paid", "overdue_3_days", "never_written", "rewritten")
AMOUNT = 4900

Write = tuple[str, str, dict[str, Any]]  # store, "INSERT table" | "UPDATE table", row (UPDATE: key first)


@dataclass(frozen=True)
class Expected:
    """One correction the story makes, and where its drift came from."""

    account_id: str
    table: str
    op: str
    column: str | None
    cause: str
    owner: str
    instant: datetime
    ref: str  # an evt_ id, rule:<name>@<instant>, or store.table[key] (a legacy write; the position is the reader's)
    rewrites: int = 0
    legacy_write: bool = False  # `instant` is a write's: a change stream times it by its commit, a moment later

    def matches_ref(self, by: str) -> bool:
        if not self.legacy_write:
            return by == self.ref
        named, _, position = by.rpartition("]@")
        return bool(position) and (named + "]").startswith(self.ref)


@dataclass
class StoryFleet:
    start: datetime
    stories: dict[str, str]  # account_id -> story
    phases: dict[str, list[Write]]  # "A" (baseline at S), "B" (wrong writes at B)
    instants: dict[str, datetime]
    stripe: StripeWorld
    expected: list[Expected] = field(default_factory=list)

    def accounts(self, story: str) -> list[str]:
        return sorted(a for a, s in self.stories.items() if s == story)

    def rewrite(self, at: datetime) -> list[Write]:
        """The rewritten accounts' handler writes 'retrying' again at `at` (after the projector's
        correction); the manifest then expects overwrote_correction since `at`."""
        writes: list[Write] = []
        for account_id in self.accounts("rewritten"):
            writes.append(("subs", "UPDATE subs_dunning", {"account_id": account_id, "stage": "retrying",
                                                            "updated_at": at}))
            self.expected.append(Expected(account_id, "subs.subs_dunning", "update", "stage", "overwrote_correction",
                                          "A3", at, f"subs.subs_dunning[{account_id}]", rewrites=1,
                                          legacy_write=True))
        return writes


def story_fleet(*, per_story: int, start: datetime) -> StoryFleet:
    """`per_story` accounts of each story, starting at `start` (whole seconds, UTC)."""
    s = start.replace(microsecond=0)
    instants = {"S": s, "B": s + 8 * SECOND, "P": s + 11 * SECOND, "X": s + 12 * SECOND}  # room for ingests
    fleet = StoryFleet(start=s, stories={}, phases={"A": [], "B": []}, instants=instants,
                       stripe=StripeWorld(now=int((s + 60 * SECOND).timestamp())))
    number = 0
    for story in STORIES:
        for _ in range(per_story):
            number += 1
            account_id = f"acc_{number:06d}"
            fleet.stories[account_id] = story
            _STORY[story](fleet, _Account(account_id, number, s))
    fleet.stripe.events.sort(key=lambda e: (e["created"], e["id"]))
    return fleet


@dataclass(frozen=True)
class _Account:
    account_id: str
    number: int
    s: datetime

    @property
    def customer_id(self) -> str:
        return f"cus_{self.number:06d}"

    @property
    def stripe_invoice_id(self) -> str:
        return f"in_{self.number:06d}"

    @property
    def invoice_id(self) -> str:
        return f"inv_{self.number:06d}_01"


def _unix(t: datetime) -> int:
    return int(t.timestamp())


def _baseline(fleet: StoryFleet, a: _Account, *, stage: str, attempts: int, next_action_at: datetime | None,
              invoice_status: str, due: datetime, dunning_rows: bool = True) -> None:
    """The account's rows as every writer left them at S, agreeing with the truth at S."""
    s, paid = a.s, invoice_status == "paid"
    delinquent = stage in ("retrying", "final_notice", "suspended")
    created = s - 90 * DAY
    fleet.phases["A"] += [
        ("cf_prod", "INSERT accounts", {"account_id": a.account_id, "name": f"Account {a.number}", "plan": "pro",
                                        "status": "active", "created_at": created, "updated_at": s}),
        ("billing_prod", "INSERT invoices", {
            "invoice_id": a.invoice_id, "account_id": a.account_id, "stripe_invoice_id": a.stripe_invoice_id,
            "status": invoice_status, "currency": "usd", "amount_due": AMOUNT, "amount_paid": AMOUNT if paid else 0,
            "due_at": due, "created_at": due - 7 * DAY, "updated_at": s}),
        ("subs", "INSERT subs_account", {"account_id": a.account_id, "billing_email": f"billing{a.number}@example.com",
                                         "country": "DE", "currency": "usd", "payment_method": None,
                                         "bad_debt": False, "delinquent": delinquent, "updated_at": s}),
        ("subs", "INSERT subs_customer", {"account_id": a.account_id, "stripe_customer_id": a.customer_id,
                                          "source": "setup", "created_at": created}),
        ("subs", "INSERT subs_invoice", {"stripe_invoice_id": a.stripe_invoice_id, "account_id": a.account_id,
                                         "status": invoice_status, "amount_remaining": 0 if paid else AMOUNT,
                                         "attempt_count": attempts, "updated_at": s}),
    ]
    if dunning_rows:
        fleet.phases["A"] += [
            ("billing_prod", "INSERT dunning", {"account_id": a.account_id, "stage": stage, "stage_since": None,
                                                "updated_at": s}),
            ("subs", "INSERT subs_dunning", {"account_id": a.account_id, "stage": stage, "attempt_count": attempts
                                             if stage != "none" else 0, "next_action_at": next_action_at,
                                             "updated_at": s}),
        ]
    fleet.stripe.customers.append(customer(a.customer_id, account_id=a.account_id, created=_unix(created),
                                           name=f"Account {a.number}", email=f"billing{a.number}@example.com",
                                           currency="usd", payment_method=None))
    fleet.stripe.events.append(event(f"evt_{a.number:06d}_cus", "customer.created", _unix(created),
                                     fleet.stripe.customers[-1]))


def _invoice(fleet: StoryFleet, a: _Account, due: datetime, changes: list[tuple[str, datetime, str, int]]) -> None:
    """The Stripe invoice, finalized a week before `due`, then each (event type, at, status, attempts)."""
    issued = due - 7 * DAY
    base = invoice_base(a.stripe_invoice_id, customer_id=a.customer_id, subscription_id=f"sub_{a.number:06d}",
                        number=f"N{a.number:06d}-1", created=_unix(issued), currency="usd", amount_due=AMOUNT,
                        period_start=_unix(issued), period_end=_unix(due), billing_reason="subscription_cycle",
                        line_id=f"il_{a.number:06d}", description="Pro")
    state = None
    for n, (etype, at, status, attempts) in enumerate([("invoice.finalized", issued, "open", 0), *changes]):
        state = invoice_state(base, status=status, amount_paid=AMOUNT if status == "paid" else 0,
                              attempt_count=attempts, due_date=_unix(due), next_payment_attempt=None,
                              finalized_at=_unix(issued), paid_at=_unix(at) if status == "paid" else None)
        fleet.stripe.events.append(event(f"evt_{a.number:06d}_{n}", etype, _unix(at), state))
    assert state is not None  # as listed now: Stripe delivered the webhooks of its last change then
    fleet.stripe.invoices.append({**state, "webhooks_delivered_at": fleet.stripe.events[-1]["created"]})


def _in_good_standing(fleet: StoryFleet, a: _Account) -> None:
    due = a.s - 40 * DAY
    _invoice(fleet, a, due, [("invoice.paid", due + DAY, "paid", 1)])
    _baseline(fleet, a, stage="none", attempts=1, next_action_at=None, invoice_status="paid", due=due)


def _wrong_write(fleet: StoryFleet, a: _Account) -> None:
    _in_good_standing(fleet, a)
    b = fleet.instants["B"]
    fleet.phases["B"].append(("subs", "UPDATE subs_dunning", {"account_id": a.account_id, "stage": "retrying",
                                                              "updated_at": b}))
    fleet.expected.append(Expected(a.account_id, "subs.subs_dunning", "update", "stage", "wrong_write", "A3", b,
                                   f"subs.subs_dunning[{a.account_id}]", legacy_write=True))


def _duplicate(fleet: StoryFleet, a: _Account) -> None:
    _in_good_standing(fleet, a)
    b = fleet.instants["B"]
    fleet.phases["B"].append(("subs", "INSERT subs_customer", {"account_id": a.account_id,
                                                               "stripe_customer_id": f"cus_dup{a.number:06d}",
                                                               "source": "checkout", "created_at": b}))
    fleet.expected.append(Expected(a.account_id, "subs.subs_customer", "delete", None, "wrong_write", "A2", b,
                                   "subs.subs_customer[", legacy_write=True))


_PAID_CORRECTIONS = (("billing_prod.invoices", "status", "A2"), ("billing_prod.invoices", "amount_paid", "A2"),
                     ("subs.subs_invoice", "status", "subs-api"), ("subs.subs_invoice", "amount_remaining", "subs-api"),
                     ("billing_prod.dunning", "stage", "A3"), ("subs.subs_dunning", "stage", "A3"),
                     ("subs.subs_dunning", "attempt_count", "A3"), ("subs.subs_dunning", "next_action_at", "A3"),
                     ("subs.subs_account", "delinquent", "A3"))


def _invoice_paid(fleet: StoryFleet, a: _Account) -> None:
    due, paid = a.s - 5 * DAY, fleet.instants["P"]
    _invoice(fleet, a, due, [("invoice.payment_failed", due + DAY, "open", 1),
                             ("invoice.payment_failed", due + 2 * DAY, "open", 2),
                             ("invoice.paid", paid, "paid", 2)])
    _baseline(fleet, a, stage="retrying", attempts=2, next_action_at=due + 14 * DAY, invoice_status="open", due=due)
    evt = f"evt_{a.number:06d}_3"  # the invoice.paid: finalized, two failures, then paid
    for table, column, owner in _PAID_CORRECTIONS:
        fleet.expected.append(Expected(a.account_id, table, "update", column, "missed_change", owner, paid, evt))


def _overdue_3_days(fleet: StoryFleet, a: _Account) -> None:
    crossing = fleet.instants["X"]
    due = crossing - 3 * DAY
    _invoice(fleet, a, due, [])
    _baseline(fleet, a, stage="grace", attempts=0, next_action_at=crossing, invoice_status="open", due=due)
    for table, column in (("billing_prod.dunning", "stage"), ("subs.subs_dunning", "stage"),
                          ("subs.subs_dunning", "next_action_at"), ("subs.subs_account", "delinquent")):
        fleet.expected.append(Expected(a.account_id, table, "update", column, "missed_change", "A3", crossing,
                                       f"rule:retrying@{crossing.isoformat()}"))


def _never_written(fleet: StoryFleet, a: _Account) -> None:
    due = a.s + 3 * SECOND  # falls due after the rows were (not) written: grace, then retrying at the failure
    _invoice(fleet, a, due, [("invoice.payment_failed", due + SECOND, "open", 1)])
    _baseline(fleet, a, stage="none", attempts=0, next_action_at=None, invoice_status="open", due=due,
              dunning_rows=False)
    fleet.expected.append(Expected(a.account_id, "billing_prod.dunning", "insert", None, "missing", "A3", due,
                                   f"rule:grace@{due.isoformat()}"))
    # subs_dunning's absence means next_action_at null: it should exist as soon as the invoice, due, is known
    fleet.expected.append(Expected(a.account_id, "subs.subs_dunning", "insert", None, "missing", "A3", a.s,
                                   f"billing_prod.invoices[{a.invoice_id}]", legacy_write=True))
    failed = f"evt_{a.number:06d}_1"  # and the rows that were written did not follow the failed payment
    for table, column, owner in (("subs.subs_invoice", "attempt_count", "subs-api"),
                                 ("subs.subs_account", "delinquent", "A3")):
        fleet.expected.append(Expected(a.account_id, table, "update", column, "missed_change", owner, due + SECOND,
                                       failed))


def _rewritten(fleet: StoryFleet, a: _Account) -> None:
    _in_good_standing(fleet, a)
    fleet.phases["B"].append(("subs", "UPDATE subs_dunning", {"account_id": a.account_id, "stage": "retrying",
                                                              "updated_at": fleet.instants["B"]}))


_STORY = {"wrong_write": _wrong_write, "duplicate": _duplicate, "invoice_paid": _invoice_paid,
          "overdue_3_days": _overdue_3_days, "never_written": _never_written, "rewritten": _rewritten}


def write(conn: Any, writes: list[Write]) -> None:
    """The writes of one phase on one store's connection (psycopg), in order."""
    for _, what, row in writes:
        verb, table = what.split(" ", 1)
        columns = list(row)
        if verb == "INSERT":
            conn.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})",
                         [row[c] for c in columns])
        else:
            key, *rest = columns
            conn.execute(f"UPDATE {table} SET {', '.join(f'{c} = %s' for c in rest)} WHERE {key} = %s",
                         [*(row[c] for c in rest), row[key]])
