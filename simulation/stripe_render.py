"""Turn an account's plan into its Stripe side: current objects and the events that made them.

Each object's events are strictly increasing in `created`, and each event's `data.object` is the
object's state right after it; the last event of an object carries exactly its current state.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from simulation import stripe_objects as so
from simulation.story import MONTH, AccountPlan, Bill, SubPlan

FAILURE_CODES = tuple(so.DECLINES)


def failure_code(t: int) -> str:
    """The decline reason of a failed attempt at `t` (the same in Stripe and in billing_prod)."""
    return FAILURE_CODES[(t // 7) % len(FAILURE_CODES)]


@dataclass
class StripeSide:
    customers: list[dict[str, Any]] = field(default_factory=list)
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    invoices: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


class _Renderer:
    def __init__(self, p: AccountPlan, seed: int) -> None:
        self.p = p
        self.rng = random.Random(f"recompute-fleet-stripe:{seed}:{p.number}")
        self.side = StripeSide()
        self.tail = so.b62(self.rng.getrandbits(59), 10)
        self.uid = 0
        self.events = 0

    def id(self, prefix: str) -> str:
        self.uid += 1
        return so.object_id(prefix, self.p.number * 10000 + self.uid, self.rng)

    def emit(self, etype: str, created: int, obj: dict[str, Any], prev: dict[str, Any] | None = None) -> None:
        self.events += 1
        evt_id = f"evt_1{so.b62(self.p.number * 100000 + self.events, 7)}{self.tail}"
        self.side.events.append(so.event(evt_id, etype, created, obj, prev))

    def render(self) -> StripeSide:
        p = self.p
        if not p.customers:
            return self.side
        cids = []
        for c in p.customers:
            cid = self.id("cus")
            cids.append(cid)
            obj = so.customer(cid, account_id=p.account_id, created=c.created, name=p.name,
                              email=p.email, currency=p.currency,
                              payment_method=p.payment_method if c.deleted_at is None else None)
            self.emit("customer.created", c.created, obj)
            if c.deleted_at is not None:
                self.emit("customer.deleted", c.deleted_at, obj)
                self.side.customers.append({"id": cid, "object": "customer", "deleted": True})
            else:
                self.side.customers.append(obj)
        # the account's customer: the earliest one that was not deleted
        self.cid = cids[next(i for i, c in enumerate(p.customers) if c.deleted_at is None)]
        for s in p.subscriptions:
            sid = self.id("sub")
            for b in ([s.first_bill] if s.first_bill else []) + s.renewals:
                if b.stripe:
                    b.stripe_id = self.id("in")
            self._subscription(s, sid)
            for b in ([s.first_bill] if s.first_bill else []) + s.renewals:
                if b.stripe:
                    self._invoice(b, sid, len(self.side.invoices) + 1)
        return self.side

    def _subscription(self, s: SubPlan, sid: str) -> None:
        p = self.p
        base = so.subscription_base(sid, customer_id=self.cid, created=s.created, currency=p.currency,
                                    plan=s.plan, trial=s.trial)
        item = so.subscription_item(self.id("si"), subscription_id=sid, created=s.created,
                                    price_id=self.id("price"), product_id=self.id("prod"),
                                    unit_amount=s.amount // p.quantity, quantity=p.quantity,
                                    currency=p.currency)
        state: dict[str, Any] = {
            "status": s.status, "period_start": s.period[0], "period_end": s.period[1],
            "latest_invoice": s.first_bill.stripe_id if s.first_bill else None,
            "canceled_at": None, "ended_at": None,
        }

        def snapshot() -> dict[str, Any]:
            return so.subscription_state(base, item, **state)

        timeline: list[tuple[int, str, Any]] = [(b.created + 2, "renew", b) for b in s.renewals]
        timeline += [(t, "status", status) for t, status in s.changes]
        timeline.sort(key=lambda x: x[0])
        last = s.created
        self.emit("customer.subscription.created", s.created, snapshot())
        for t, what, arg in timeline:
            t = max(t, last + 1)
            last = t
            if what == "renew":
                prev = {"latest_invoice": state["latest_invoice"],
                        "items": {"data": [{"current_period_start": state["period_start"],
                                            "current_period_end": state["period_end"]}]}}
                state.update(period_start=arg.created, period_end=arg.created + MONTH,
                             latest_invoice=arg.stripe_id)
                self.emit("customer.subscription.updated", t, snapshot(), prev)
                continue
            prev = {"status": state["status"]}
            state["status"] = arg
            if arg == "canceled":
                state["canceled_at"] = state["ended_at"] = t
                self.emit("customer.subscription.deleted", t, snapshot())
            elif arg == "paused":
                self.emit("customer.subscription.paused", t, snapshot(), prev)
            else:
                self.emit("customer.subscription.updated", t, snapshot(), prev)
        s.last_event = last
        self.side.subscriptions.append(snapshot())

    def _invoice(self, b: Bill, sid: str, seq: int) -> None:
        p = self.p
        pi, pm, line = self.id("pi"), p.payment_method or "pm_card_visa", self.id("il")
        plan_name = p.plan.capitalize()
        unit = b.amount // p.quantity if p.quantity else 0
        base = so.invoice_base(
            b.stripe_id, customer_id=self.cid, subscription_id=sid,
            number=f"{self.cid[-8:].upper()}-{seq:04d}", created=b.created, currency=p.currency,
            amount_due=b.amount, period_start=b.period_start, period_end=b.period_end,
            billing_reason=b.reason, line_id=line,
            description=f"{p.quantity} × {plan_name} (at ${unit / 100:.2f} / month)")
        state: dict[str, Any] = dict(amount_paid=0, attempt_count=0, status="draft", due_date=None,
                                     next_payment_attempt=None, finalized_at=None)

        def snapshot() -> dict[str, Any]:
            return so.invoice_state(base, **state)

        obj = snapshot()
        self.emit("invoice.created", b.created, obj)
        if b.finalized is not None:
            state.update(status="open", due_date=b.due, finalized_at=b.finalized,
                         next_payment_attempt=b.finalized + 60 if b.amount else None)
            obj = snapshot()
            self.emit("invoice.finalized", b.finalized, obj)
        for i, t in enumerate(b.fails):
            ch = self.id("ch")
            b.charge_ids.append(ch)
            self.emit("charge.failed", t, so.charge(ch, customer_id=self.cid, amount=b.amount,
                                                    currency=p.currency, created=t, succeeded=False,
                                                    failure_code=failure_code(t), payment_intent=pi,
                                                    payment_method=pm))
            following = b.fails[i + 1] if i + 1 < len(b.fails) else b.paid_at
            state.update(attempt_count=i + 1, next_payment_attempt=following or t + 3 * 86400)
            obj = snapshot()
            self.emit("invoice.payment_failed", t, obj)
        if b.paid_at is not None:
            if b.amount:
                ch = self.id("ch")
                b.charge_ids.append(ch)
                self.emit("charge.succeeded", b.paid_at, so.charge(
                    ch, customer_id=self.cid, amount=b.amount, currency=p.currency, created=b.paid_at,
                    succeeded=True, failure_code=None, payment_intent=pi, payment_method=pm))
            state.update(status="paid", amount_paid=b.amount, next_payment_attempt=None,
                         attempt_count=len(b.fails) + (1 if b.amount else 0), paid_at=b.paid_at)
            obj = snapshot()
            self.emit("invoice.paid", b.paid_at, obj)
        elif b.voided_at is not None:
            state.update(status="void", next_payment_attempt=None, voided_at=b.voided_at)
            obj = snapshot()
            self.emit("invoice.voided", b.voided_at, obj)
        elif b.uncollectible_at is not None:
            state.update(status="uncollectible", next_payment_attempt=None,
                         marked_uncollectible_at=b.uncollectible_at)
            obj = snapshot()
            self.emit("invoice.marked_uncollectible", b.uncollectible_at, obj)
        self.side.invoices.append(obj)


def render_stripe(p: AccountPlan, seed: int) -> StripeSide:
    """Stripe's current objects and events for `p`; sets each Stripe bill's `stripe_id` and `charge_ids`."""
    return _Renderer(p, seed).render()
