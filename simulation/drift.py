"""Drift: legacy values that differ from the true state, one kind per column rules v1 §3 checks.

A kind is named by the correction it must produce (`correction_kind`), e.g.
`subs.subs_dunning:update:next_action_at` or `subs.subs_customer:insert`. Drift only ever touches
compared columns and rows, never an authority (Stripe, charges, schedules, product_config, manual
entitlements, profile columns, invoice amounts, currency or due dates), so the true state of a
drifted account is the same as before.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from simulation.oracle.expected_state import TrueState
from simulation.oracle.rules_v1 import STAGES
from simulation.records import AccountRecords, Row

Check = Callable[[AccountRecords, TrueState], bool]
Inject = Callable[[AccountRecords, TrueState, random.Random, datetime], None]
STALE_STATUS = {"paid": "open", "open": "paid", "void": "open", "uncollectible": "open", "draft": "open"}
SUB_STALE = {"active": "past_due", "past_due": "active", "unpaid": "past_due", "canceled": "active",
             "trialing": "active", "paused": "trialing", "incomplete": "active",
             "incomplete_expired": "incomplete"}


@dataclass(frozen=True)
class DriftKind:
    name: str
    eligible: Check
    inject: Inject

    @property
    def table(self) -> str:
        return self.name.split(":")[0]


def _stripe_rows(r: AccountRecords, t: TrueState) -> list[Row]:
    return [row for row in r.invoices if row["stripe_invoice_id"] in t.stripe_invoices]


def _pick(rng: random.Random, rows: list[Row]) -> Row:
    return rows[rng.randrange(len(rows))]


def _invoice_status(r, t, rng, now):
    row = _pick(rng, _stripe_rows(r, t))
    row["status"] = STALE_STATUS[row["status"]]


def _invoice_paid(r, t, rng, now):
    row = _pick(rng, [x for x in _stripe_rows(r, t) if x["amount_due"] > 0])
    row["amount_paid"] = 0 if row["amount_paid"] else row["amount_due"]


def _cache_status(r, t, rng, now):
    row = _pick(rng, r.subs_invoice)
    row["status"] = STALE_STATUS[row["status"]]


def _cache_remaining(r, t, rng, now):
    row = _pick(rng, r.subs_invoice)
    row["amount_remaining"] = 0 if row["amount_remaining"] else 1900


def _cache_attempts(r, t, rng, now):
    row = _pick(rng, r.subs_invoice)
    row["attempt_count"] = row["attempt_count"] - 1 if row["attempt_count"] else 1


def _cache_missing(r, t, rng, now):
    r.subs_invoice.remove(_pick(rng, r.subs_invoice))


def _stale_time(r: AccountRecords, now: datetime) -> datetime:
    """When a stale legacy write happened: after the account's last change, before now."""
    return min(r.account["updated_at"] + timedelta(minutes=10), now - timedelta(hours=2))


def _other_stage(rng: random.Random, stage: str) -> str:
    return rng.choice([s for s in STAGES if s != stage])


def _dunning_stage(r, t, rng, now):
    if r.dunning is None:
        r.dunning = {"account_id": r.account_id, "stage": "none", "stage_since": None,
                     "updated_at": _stale_time(r, now)}
    r.dunning["stage"] = _other_stage(rng, t.standing.stage)


def _dunning_missing(r, t, rng, now):
    r.dunning = None


def _subs_dunning(r: AccountRecords, t: TrueState, now: datetime) -> Row:
    if r.subs_dunning is None:
        s = t.standing
        r.subs_dunning = {"account_id": r.account_id, "stage": s.stage, "attempt_count": s.failed_attempts,
                          "next_action_at": s.next_action_at, "updated_at": _stale_time(r, now)}
    return r.subs_dunning


def _sd_stage(r, t, rng, now):
    _subs_dunning(r, t, now)["stage"] = _other_stage(rng, t.standing.stage)


def _sd_attempts(r, t, rng, now):
    n = t.standing.failed_attempts
    _subs_dunning(r, t, now)["attempt_count"] = n - 1 if n and rng.random() < 0.5 else n + rng.randint(1, 3)


def _sd_next(r, t, rng, now):
    row, true = _subs_dunning(r, t, now), t.standing.next_action_at
    row["next_action_at"] = (None if true is not None and rng.random() < 0.4
                             else (true or row["updated_at"]) + timedelta(days=rng.choice((1, 3, 7))))


def _sd_missing(r, t, rng, now):
    r.subs_dunning = None


def _flag(column: str) -> Inject:
    def inject(r, t, rng, now):
        r.subs_account[column] = not r.subs_account[column]
    return inject


def _sub_status(r, t, rng, now):
    r.subs_subscription["status"] = SUB_STALE[t.subscription.status]


def _sub_id(r, t, rng, now):
    older = [s["id"] for s in r.subscriptions if s["id"] != t.subscription.id]
    r.subs_subscription["stripe_subscription_id"] = older[-1] if older else f"sub_1Stale{r.account_id[4:]}"


def _sub_period(r, t, rng, now):
    end = t.subscription.current_period_end
    r.subs_subscription["current_period_end"] = end - timedelta(days=30) if end else now - timedelta(days=3)


def _sub_missing(r, t, rng, now):
    r.subs_subscription = None


def _wrong_customers(r: AccountRecords, t: TrueState) -> list[str]:
    others = [c["id"] for c in r.customers if c["id"] != t.customer_id]
    return others or [f"cus_1Stale{r.account_id[4:]}"]


def _customer_row(r: AccountRecords, cid: str, source: str, minutes: int) -> Row:
    base = r.subs_customer[0]["created_at"] if r.subs_customer else r.account["created_at"]
    return {"account_id": r.account_id, "stripe_customer_id": cid, "source": source,
            "created_at": base + timedelta(minutes=minutes)}


def _customer_duplicate(r, t, rng, now):
    if rng.random() < 0.5:  # setup and checkout both wrote the same customer
        r.subs_customer.append(_customer_row(r, t.customer_id, "checkout", rng.randint(1, 90)))
    else:  # an older row points at another (deleted, or later) customer
        r.subs_customer.insert(0, _customer_row(r, rng.choice(_wrong_customers(r, t)), "setup", -5))


def _customer_wrong(r, t, rng, now):
    wrong = rng.choice(_wrong_customers(r, t))
    r.subs_customer[0]["stripe_customer_id"] = wrong
    if rng.random() < 0.3:  # and a second wrong row: update the lowest, delete the other
        r.subs_customer.append(_customer_row(r, wrong, "checkout", rng.randint(1, 90)))


def _customer_missing(r, t, rng, now):
    r.subs_customer.clear()


def _account_status(r, t, rng, now):
    r.account["status"] = "active" if t.status == "suspended" else "suspended"


def _plan_rows(r: AccountRecords) -> list[Row]:
    return [e for e in r.entitlements if e["source"] != "manual"]


def _entitlement_flip(r, t, rng, now):
    row = _pick(rng, _plan_rows(r))
    row["enabled"] = not row["enabled"]


def _entitlement_missing(r, t, rng, now):
    r.entitlements.remove(_pick(rng, [e for e in _plan_rows(r) if e["enabled"]]))


def _always(r, t):
    return True


def _has_sub(r, t):
    return t.subscription is not None and r.subs_subscription is not None


def _has_customer(r, t):
    return t.customer_id is not None and len(r.subs_customer) == 1


def _not_none(r, t):
    s = t.standing
    return (s.stage, s.failed_attempts, s.next_action_at) != ("none", 0, None)


KINDS: tuple[DriftKind, ...] = (
    DriftKind("billing_prod.invoices:update:status", lambda r, t: bool(_stripe_rows(r, t)), _invoice_status),
    DriftKind("billing_prod.invoices:update:amount_paid",
              lambda r, t: any(x["amount_due"] > 0 for x in _stripe_rows(r, t)), _invoice_paid),
    DriftKind("subs.subs_invoice:update:status", lambda r, t: bool(r.subs_invoice), _cache_status),
    DriftKind("subs.subs_invoice:update:amount_remaining", lambda r, t: bool(r.subs_invoice), _cache_remaining),
    DriftKind("subs.subs_invoice:update:attempt_count", lambda r, t: bool(r.subs_invoice), _cache_attempts),
    DriftKind("subs.subs_invoice:insert", lambda r, t: bool(r.subs_invoice), _cache_missing),
    DriftKind("billing_prod.dunning:update:stage", _always, _dunning_stage),
    DriftKind("billing_prod.dunning:insert", lambda r, t: t.standing.stage != "none", _dunning_missing),
    DriftKind("subs.subs_dunning:update:stage", _always, _sd_stage),
    DriftKind("subs.subs_dunning:update:attempt_count", _always, _sd_attempts),
    DriftKind("subs.subs_dunning:update:next_action_at", _always, _sd_next),
    DriftKind("subs.subs_dunning:insert", _not_none, _sd_missing),
    DriftKind("subs.subs_account:update:bad_debt", _always, _flag("bad_debt")),
    DriftKind("subs.subs_account:update:delinquent", _always, _flag("delinquent")),
    DriftKind("subs.subs_subscription:update:status", _has_sub, _sub_status),
    DriftKind("subs.subs_subscription:update:stripe_subscription_id", _has_sub, _sub_id),
    DriftKind("subs.subs_subscription:update:current_period_end", _has_sub, _sub_period),
    DriftKind("subs.subs_subscription:insert", _has_sub, _sub_missing),
    DriftKind("subs.subs_customer:delete", _has_customer, _customer_duplicate),
    DriftKind("subs.subs_customer:update:stripe_customer_id", _has_customer, _customer_wrong),
    DriftKind("subs.subs_customer:insert", _has_customer, _customer_missing),
    DriftKind("cf_prod.accounts:update:status", lambda r, t: t.status != "closed", _account_status),
    DriftKind("cf_prod.entitlements:update:enabled", lambda r, t: bool(_plan_rows(r)), _entitlement_flip),
    DriftKind("cf_prod.entitlements:insert", lambda r, t: any(e["enabled"] for e in _plan_rows(r)),
              _entitlement_missing),
)
KIND_NAMES = tuple(k.name for k in KINDS)


def eligibility(r: AccountRecords, t: TrueState) -> int:
    """The kinds `r` can carry, as a bit mask over KINDS (bit i: KINDS[i]): what choosing needs of an
    account, so that a fleet too large for memory can be chosen from without holding its records."""
    return sum(1 << n for n, kind in enumerate(KINDS) if kind.eligible(r, t))


@dataclass
class DriftChoice:
    """Which accounts drift and how, and the random stream their injections continue.

    `inject` must be called for the chosen accounts in ascending index order: each injection draws
    from the same stream, so that order is part of the fleet.
    """

    chosen: dict[int, list[DriftKind]]  # account index -> kinds
    rng: random.Random
    _last: int = -1

    def inject(self, i: int, r: AccountRecords, t: TrueState, now: datetime) -> list[str]:
        """Inject account `i`'s kinds into `r` (none when it was not chosen); returns their names."""
        if i <= self._last:
            raise ValueError(f"account index {i}: injections go in ascending order (last was {self._last})")
        self._last = i
        for kind in self.chosen.get(i, ()):
            kind.inject(r, t, self.rng, now)
        return [k.name for k in self.chosen.get(i, ())]


def choose_drift(eligible: Sequence[int], *, drifting: int, seed: int) -> DriftChoice:
    """Choose exactly `drifting` accounts from their `eligibility` masks, each kind at least once
    when `drifting` and the fleet allow (a tiny fleet may have no account that can carry some kind).

    Every account gets one kind; a quarter get a second one on another table.
    """
    if not 0 <= drifting <= len(eligible):
        raise ValueError(f"drifting={drifting}: must be between 0 and the number of accounts ({len(eligible)})")
    rng = random.Random(f"recompute-fleet-drift:{seed}")
    order = list(range(len(eligible)))
    rng.shuffle(order)
    chosen: dict[int, list[DriftKind]] = {}
    bit = {kind.name: 1 << n for n, kind in enumerate(KINDS)}

    def can(i: int, kind: DriftKind) -> bool:
        return bool(eligible[i] & bit[kind.name])

    for kind in KINDS[:drifting]:  # every kind once, on an account that can carry it (if any)
        i = next((i for i in order if i not in chosen and can(i, kind)), None)
        if i is not None:
            chosen[i] = [kind]
    for i in order:
        if len(chosen) >= drifting:
            break
        if i not in chosen:
            chosen[i] = [rng.choice([k for k in KINDS if can(i, k)])]
    for i, kinds in chosen.items():
        if rng.random() < 0.25:
            others = [k for k in KINDS if k.table not in {x.table for x in kinds} and can(i, k)]
            if others:
                kinds.append(rng.choice(others))
    return DriftChoice(chosen, rng)
