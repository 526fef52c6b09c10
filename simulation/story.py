"""One account's history, planned as plain data before anything is rendered.

`plan_account(number, seed, now)` draws a profile (plan, seats, currency, closed or not, whether it
has a Stripe customer) and a scenario (paid up, past due, bad debt, trialing, paused, closed, free),
then lays out its invoices on a monthly grid and its subscriptions' status changes.

Timing guarantees the oracle relies on (all times are unix seconds):
- nothing happens later than `now - SAFE`;
- every invoice that can be open has its due date a whole number of days plus [SAFE, DAY - SAFE]
  away from `now`, so no due date or threshold crossing lies within SAFE of `now`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from simulation.records import PLAN_FEATURES, PLAN_PRICE

HOUR, DAY = 3600, 86400
SAFE = 3 * HOUR
MONTH = 30 * DAY
PLANS, PLAN_WEIGHTS = ("free", "starter", "pro", "enterprise"), (22, 36, 30, 12)
CYCLE_WEIGHTS = (2, 2, 3, 4, 6, 9, 12, 12, 10, 8, 6, 4)  # 1..12 monthly invoices, ~7.4 on average
ATTEMPT_WEIGHTS = (8, 16, 16, 14, 16, 15, 15)  # failed attempts 0..6 on a past-due invoice
OVERDUE_BUCKETS = ((0, 2), (3, 13), (14, 20), (21, 59), (60, 90))  # days overdue of past-due accounts
OVERDUE_WEIGHTS = (22, 30, 18, 20, 10)
WORDS = ("Acme Blue Cedar Delta Ember Fjord Granite Harbor Indigo Juniper Kestrel Lumen Maple "
         "Nimbus Orchid Pioneer Quartz Raven Summit Tidal Umber Vertex Willow Zephyr").split()
SUFFIXES = ("Labs", "Systems", "Analytics", "Studio", "Logistics", "Health", "Foods", "Works")
COUNTRIES = ("US", "US", "US", "GB", "DE", "FR", "CA", "NL", "AU")


@dataclass
class Bill:
    """One invoice: when it was created, finalized, due, failed, and how it ended."""

    created: int
    amount: int
    stripe: bool
    finalized: int | None
    due: int | None
    period_start: int
    period_end: int
    reason: str
    fails: list[int] = field(default_factory=list)
    paid_at: int | None = None
    voided_at: int | None = None
    uncollectible_at: int | None = None
    invoice_id: str = ""
    stripe_id: str | None = None  # set when rendered, for invoices sent to Stripe
    charge_ids: list[str] = field(default_factory=list)  # Stripe charges: one per fail, then the payment

    @property
    def status(self) -> str:
        if self.finalized is None:
            return "draft"
        if self.paid_at is not None:
            return "paid"
        if self.voided_at is not None:
            return "void"
        if self.uncollectible_at is not None:
            return "uncollectible"
        return "open"

    @property
    def last_change(self) -> int:
        times = [self.created, self.finalized, *self.fails, self.paid_at, self.voided_at,
                 self.uncollectible_at]
        return max(t for t in times if t is not None)


@dataclass
class SubPlan:
    created: int
    status: str  # status at creation
    plan: str
    amount: int
    changes: list[tuple[int, str]] = field(default_factory=list)  # (time, new status), in order
    renewals: list[Bill] = field(default_factory=list)  # the cycle invoices it created after the first
    period: tuple[int, int] = (0, 0)  # the first period
    trial: tuple[int, int] | None = None
    first_bill: Bill | None = None
    last_event: int = 0  # set when rendered


@dataclass
class CustomerPlan:
    created: int
    deleted_at: int | None = None


@dataclass
class AccountPlan:
    number: int
    account_id: str
    kind: str
    plan: str
    quantity: int
    currency: str
    name: str
    email: str  # on the Stripe customer
    billing_email: str  # in subs_account: changed there alone now and then (noise, never compared)
    country: str
    payment_method: str | None
    created_at: int
    closed_at: int | None
    bills: list[Bill]
    customers: list[CustomerPlan]  # [0] is the account's customer; deleted ones first
    subscriptions: list[SubPlan]  # in `created` order; only when the account has a customer
    manual: dict[str, bool]  # manual entitlements
    leftover: list[str]  # non-manual rows of features outside the plan (enabled false)
    profile_updated_at: int
    customer_source: str
    stale_mapping: bool  # an account without a Stripe customer keeps an old subs_customer row


def plan_account(number: int, seed: int, now: int) -> AccountPlan:
    return _Planner(number, seed, now).plan()


class _Planner:
    def __init__(self, number: int, seed: int, now: int) -> None:
        self.rng = random.Random(f"recompute-fleet:{seed}:{number}")
        self.number, self.now, self.latest = number, now, now - SAFE
        self.cancel_at: int | None = None

    # -- profile ---------------------------------------------------------------------------
    def plan(self) -> AccountPlan:
        rng = self.rng
        plan = rng.choices(PLANS, PLAN_WEIGHTS)[0]
        quantity = 1 if plan == "free" else rng.choices((1, 2, 3, 5, 10), (50, 20, 12, 10, 8))[0]
        self.amount = PLAN_PRICE[plan] * quantity
        closed = rng.random() < 0.035
        has_customer = rng.random() >= 0.015
        r = rng.random()
        if plan == "free":
            kind = "free" if r < 0.5 else "free_nosub"
        elif closed:
            kind = "closed"
        else:
            kind = ("trialing" if r < 0.04 else "paused" if r < 0.05 else "past_due" if r < 0.30
                    else "uncollectible" if r < 0.35 else "paid_up")
        if not has_customer and kind in ("trialing", "paused"):
            kind = "paid_up"
        words = rng.sample(WORDS, 2)
        name = f"{words[0]} {words[1]} {rng.choice(SUFFIXES)}"
        slug = f"{words[0]}{words[1]}".lower()

        bills = self._bills(kind)
        if closed:
            self._close(bills)
        first = bills[0].created if bills else self.now - rng.randint(DAY, 400 * DAY)
        earlier_sub = has_customer and kind not in ("free", "free_nosub", "trialing", "paused") \
            and rng.random() < 0.10
        created_at = first - (rng.randint(12 * DAY, 20 * DAY) if earlier_sub
                              else rng.randint(2 * HOUR, 5 * DAY))
        if closed and not bills:
            self.cancel_at = rng.randint(min(created_at + DAY, self.latest), self.latest)
        customers = self._customers(created_at, first) if has_customer else []
        subs = self._subscriptions(kind, plan, bills, created_at, earlier_sub) if has_customer else []
        for b in bills:
            b.stripe = has_customer and b.stripe and bool(subs)
        self._extras(bills, kind)
        bills.sort(key=lambda b: b.created)
        for i, b in enumerate(bills, 1):
            b.invoice_id = f"inv_{self.number:06d}_{i:02d}"

        features = PLAN_FEATURES[plan]
        manual: dict[str, bool] = {}
        if rng.random() < 0.07:
            outside = sorted(set().union(*PLAN_FEATURES.values()) - features)
            if outside:
                manual[rng.choice(outside)] = True  # granted by a person, beyond the plan
            if rng.random() < 0.4:
                manual[rng.choice(sorted(features))] = False  # switched off by a person
        leftover = []
        if plan in ("free", "starter") and rng.random() < 0.06:
            leftover = [f for f in sorted(PLAN_FEATURES["pro"] - features) if f not in manual][:2]
        last = max([created_at, *(b.last_change for b in bills)])
        profile_changed = rng.random() < 0.05
        return AccountPlan(
            number=self.number, account_id=f"acc_{self.number:06d}", kind=kind, plan=plan, quantity=quantity,
            currency=rng.choices(("usd", "eur", "gbp"), (80, 14, 6))[0], name=name,
            email=f"billing@{slug}.example", country=rng.choice(COUNTRIES),
            billing_email=f"{'finance' if profile_changed else 'billing'}@{slug}.example",
            payment_method=(f"pm_1{self.number:07d}{rng.getrandbits(40):010x}"
                            if has_customer and kind != "free_nosub" else None),
            created_at=created_at, closed_at=self.cancel_at if closed else None, bills=bills,
            customers=customers, subscriptions=subs, manual=manual, leftover=leftover,
            profile_updated_at=rng.randint(last, self.latest) if profile_changed else created_at,
            customer_source="setup" if rng.random() < 0.7 else "checkout",
            stale_mapping=not has_customer and rng.random() < 0.4,
        )

    # -- invoices --------------------------------------------------------------------------
    def _grid(self, n: int, anchor_due: int | None = None) -> list[Bill]:
        """Monthly invoices, the latest created at least 6 hours ago. With `anchor_due`, the n-th
        invoice falls due then and as many follow as fit; otherwise there are n of them."""
        rng = self.rng
        net = rng.choices((0, 7, 14, 30), (60, 15, 10, 15))[0]
        if anchor_due is None:
            c_last = self.now - rng.randint(6 * HOUR, MONTH - HOUR)
            r = (self.now - (c_last + HOUR + net * DAY)) % DAY
            if not SAFE <= r <= DAY - SAFE:  # move the whole grid so due dates sit mid-day from now
                c_last -= (SAFE + rng.randint(0, HOUR) - r) % DAY
        else:
            c_anchor = anchor_due - HOUR - net * DAY
            following = (self.now - 6 * HOUR - c_anchor) // MONTH
            c_last, n = c_anchor + following * MONTH, n + following
        self.due_anchor = c_last + HOUR + net * DAY
        bills = []
        for k in range(n):
            c = c_last - (n - 1 - k) * MONTH
            bills.append(Bill(created=c, amount=self.amount, stripe=True, finalized=c + HOUR,
                              due=c + HOUR + net * DAY, period_start=c - MONTH if k else c,
                              period_end=c, reason="subscription_cycle" if k else "subscription_create"))
        return bills

    def _bills(self, kind: str) -> list[Bill]:
        rng = self.rng
        if kind == "free_nosub":
            self.due_anchor = self.now - DAY // 2
            return []
        if kind in ("trialing", "paused"):
            c = self.now - (rng.randint(6 * HOUR, 13 * DAY) if kind == "trialing"
                            else rng.randint(15 * DAY, 60 * DAY))
            self.due_anchor = c + HOUR
            bill = Bill(created=c, amount=0, stripe=True, finalized=c + HOUR, due=c + HOUR,
                        period_start=c, period_end=c, reason="subscription_create")
            bill.paid_at = c + HOUR + 1
            return [bill]
        if kind == "past_due":
            return self._past_due()
        bills = self._grid(rng.choices(range(1, 13), CYCLE_WEIGHTS)[0])
        if kind == "free":
            for b in bills:
                b.amount, b.paid_at = 0, b.finalized + 1
            return bills
        for b in bills[:-1]:
            self._settle(b)
        self._settle_latest(bills[-1])
        if kind == "uncollectible":
            self._uncollectible(bills)
        return bills

    def _settle(self, b: Bill, until: int | None = None) -> None:
        """Paid, sometimes after a few failed attempts; now and then voided instead."""
        rng, until = self.rng, until or self.latest
        b.fails, b.paid_at, b.voided_at = [], None, None
        if b.finalized is None:  # a draft stays a draft
            return
        if not b.amount:  # Stripe marks a $0 invoice paid at finalization, without a charge
            b.paid_at = b.finalized + 1
            return
        if rng.random() < 0.03:
            b.voided_at = min(b.finalized + rng.randint(HOUR, 3 * DAY), until)
            return
        t = b.finalized + 60
        if rng.random() < 0.12:
            fails = []
            for _ in range(rng.randint(1, 3)):
                fails.append(t)
                t += rng.randint(2 * DAY, 4 * DAY)
            if t <= until:
                b.fails = fails
            else:
                t = b.finalized + 60
        b.paid_at = t

    def _settle_latest(self, b: Bill) -> None:
        rng = self.rng
        if rng.random() < 0.05:  # still a draft
            b.finalized = b.due = None
            return
        if b.due > self.now and rng.random() < 0.85:  # open, not due yet
            self._fail(b, 1 if rng.random() < 0.12 else 0)
            return
        self._settle(b)

    def _fail(self, b: Bill, attempts: int, until: int | None = None) -> None:
        """Leave `b` open after `attempts` failed payment attempts."""
        until = until or self.latest
        b.paid_at = b.voided_at = None
        first = b.finalized + 60
        b.fails = [first, *sorted(self.rng.sample(range(first + 60, until), attempts - 1))] if attempts else []

    def _past_due(self) -> list[Bill]:
        """Paid up to one invoice; that one and every later one open, the card failing."""
        rng = self.rng
        lo, hi = rng.choices(OVERDUE_BUCKETS, OVERDUE_WEIGHTS)[0]
        # at least 6 hours past due, so that it was created, finalized and failed before now - SAFE
        anchor_due = self.now - rng.randint(lo, hi) * DAY - rng.randint(6 * HOUR, DAY - SAFE)
        before = rng.choices(range(1, 10), (6, 8, 10, 12, 14, 14, 14, 12, 10))[0]
        bills = self._grid(before, anchor_due)
        for b in bills[:before - 1]:
            self._settle(b)
        for b in bills[before - 1:]:
            days = (self.now - b.due) // DAY
            if days < 0:
                attempts = 1 if rng.random() < 0.15 else 0
            elif days < 3:
                attempts = rng.choices((0, 1, 2), (50, 35, 15))[0]
            elif days < 14:
                attempts = rng.choices(range(5), (10, 25, 25, 20, 20))[0]
            else:
                attempts = rng.choices(range(7), ATTEMPT_WEIGHTS)[0]
            self._fail(b, attempts)
        return bills

    def _uncollectible(self, bills: list[Bill]) -> None:
        rng = self.rng
        candidates = [k for k, b in enumerate(bills) if b.due is not None and b.due + 20 * DAY <= self.latest]
        if not candidates:
            return
        k = rng.choice(candidates[-3:])
        b = bills[k]
        marked = min(b.due + rng.randint(18 * DAY, 45 * DAY), self.latest - HOUR)
        self._fail(b, rng.randint(4, 8), until=marked - 60)
        b.uncollectible_at = marked
        if rng.random() < 0.5:  # the subscription was cancelled with it
            del bills[k + 1:]
            self.cancel_at = marked + 60

    def _close(self, bills: list[Bill]) -> None:
        """The account closed after one of its invoices; the subscription ended with it."""
        rng = self.rng
        if not bills:
            return  # closed some time after it was created: decided with its creation time
        del bills[rng.randint(0, len(bills) - 1) + 1:]
        last = bills[-1]
        self.cancel_at = closed_at = min(last.created + rng.randint(2 * DAY, 25 * DAY), self.latest - HOUR)
        for b in bills:
            if b.status == "open" or (b.paid_at or 0) > closed_at:
                self._settle(b, until=closed_at - 60)
        r = rng.random()
        if last.amount and last.finalized is not None and r < 0.40:
            self._fail(last, rng.choices(range(7), ATTEMPT_WEIGHTS)[0], until=closed_at - 60)
            if r < 0.25 or (self.now - last.due) // DAY > 90:
                last.voided_at = closed_at - 30

    def _extras(self, bills: list[Bill], kind: str) -> None:
        """Invoices billed outside Stripe (professional services, manual invoices)."""
        rng = self.rng
        if not bills or kind in ("free", "trialing", "paused", "closed") or rng.random() >= 0.08:
            return
        for _ in range(rng.randint(1, 2)):
            r = rng.random()
            low = bills[0].created if r < 0.65 else max(bills[0].created, self.now - 55 * DAY)
            if low >= self.now - 6 * HOUR:
                return
            c = rng.randint(low, self.now - 6 * HOUR)
            target = c + HOUR + rng.choice((7, 14, 30)) * DAY
            due = target - (target - self.due_anchor) % DAY
            if due < c + HOUR:
                due += DAY
            b = Bill(created=c, amount=rng.randint(5, 200) * 500, stripe=False, finalized=c + HOUR,
                     due=due, period_start=c, period_end=c, reason="manual")
            if r < 0.65:
                self._settle(b)
            elif r < 0.90:
                self._fail(b, rng.randint(0, 4))
            else:
                b.finalized = b.due = None
            bills.append(b)

    # -- Stripe customers and subscriptions -------------------------------------------------
    def _customers(self, created_at: int, first: int) -> list[CustomerPlan]:
        rng = self.rng
        r = rng.random()
        if r < 0.04:  # a customer made at setup, deleted, and a new one made at checkout
            old = created_at + rng.randint(60, 300)
            deleted = old + rng.randint(600, 1200)
            return [CustomerPlan(old, deleted), CustomerPlan(deleted + rng.randint(60, 600))]
        customers = [CustomerPlan(created_at + rng.randint(60, 600))]
        if r < 0.06 and first + HOUR < self.latest:  # a second, later customer (a checkout race)
            customers.append(CustomerPlan(rng.randint(first + HOUR, self.latest)))
        return customers

    def _subscriptions(self, kind: str, plan: str, bills: list[Bill], created_at: int,
                       earlier: bool) -> list[SubPlan]:
        rng = self.rng
        if not bills:
            return []
        subs = []
        if earlier:
            s = SubPlan(created=created_at + 2400, status="incomplete", plan="starter", amount=2900)
            if rng.random() < 0.5:
                s.changes.append((s.created + 23 * HOUR, "incomplete_expired"))
            else:
                s.status, s.trial = "trialing", (s.created, s.created + 14 * DAY)
                s.changes.append((s.created + rng.randint(DAY, 10 * DAY), "canceled"))
            s.period = s.trial or (s.created, s.created + MONTH)
            subs.append(s)
        start = bills[0].created - 20
        main = SubPlan(created=start, status="active", plan=plan, amount=self.amount,
                       period=(start, start + MONTH), renewals=bills[1:], first_bill=bills[0])
        if kind in ("trialing", "paused"):
            main.status, main.trial = "trialing", (start, start + 14 * DAY)
            main.period = main.trial
            if kind == "paused":
                main.changes.append((start + 14 * DAY, "paused"))
        main.changes.extend(self._dunning_changes(bills))
        if self.cancel_at is not None:
            main.changes = [c for c in main.changes if c[0] < self.cancel_at]
            main.changes.append((self.cancel_at, "canceled"))
        subs.append(main)
        if kind == "paid_up" and rng.random() < 0.03:  # an upgrade checkout that never completed
            low = max(start + HOUR, self.now - 10 * DAY)
            if low < self.latest:
                s = SubPlan(created=rng.randint(low, self.latest), status="incomplete", plan="pro", amount=9900)
                s.period = (s.created, s.created + MONTH)
                if s.created + 23 * HOUR <= self.latest:
                    s.changes.append((s.created + 23 * HOUR, "incomplete_expired"))
                subs.append(s)
        return subs

    def _dunning_changes(self, bills: list[Bill]) -> list[tuple[int, str]]:
        """active -> past_due on a failed payment, back to active once every failing invoice is
        settled; `unpaid` after a month past due, sometimes."""
        spans: list[tuple[int, int | None]] = []
        settled = sorted(((b.fails[0], b.paid_at or b.voided_at or b.uncollectible_at)
                          for b in bills if b.fails), key=lambda span: span[0])
        for start, stop in settled:
            if spans and (spans[-1][1] is None or start <= spans[-1][1]):
                prev_start, prev_stop = spans[-1]
                spans[-1] = (prev_start, None if prev_stop is None or stop is None else max(prev_stop, stop))
            else:
                spans.append((start, stop))
        changes: list[tuple[int, str]] = []
        for start, stop in spans:
            changes.append((start, "past_due"))
            if stop is not None:
                changes.append((stop, "active"))
        if spans and spans[-1][1] is None and self.rng.random() < 0.5:
            oldest = min(b.due for b in bills if b.status == "open" and b.fails)
            unpaid = max(oldest + 30 * DAY, changes[-1][0] + HOUR)
            if unpaid <= self.latest:
                changes.append((unpaid, "unpaid"))
        return changes
