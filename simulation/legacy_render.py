"""Turn an account's plan into its legacy rows.

`authoritative_rows` writes what rules v1 takes as authority (the account, manual entitlements,
invoices, charges, schedules, the billing profile) plus the Stripe side. `fill_consistent_rows` then
writes every column rules v1 §3 checks from the account's true state, so that an account nobody
drifts has nothing to correct. Noise that must not be corrected goes into authoritative or
never-compared places only.
"""

from __future__ import annotations

import random
from datetime import timedelta

from simulation.oracle.expected_state import TrueState
from simulation.records import PLAN_FEATURES, AccountRecords, at
from simulation.story import DAY, AccountPlan, Bill, SubPlan
from simulation.stripe_render import StripeSide, failure_code

STAGE_DAYS = {"grace": 0, "retrying": 3, "final_notice": 14, "suspended": 21}


def authoritative_rows(p: AccountPlan, stripe: StripeSide, rng: random.Random) -> AccountRecords:
    acc = p.account_id
    r = AccountRecords(
        account_id=acc,
        account={"account_id": acc, "name": p.name, "plan": p.plan,
                 "status": "closed" if p.closed_at is not None else "active",
                 "created_at": at(p.created_at), "updated_at": at(p.created_at)},
        customers=stripe.customers, subscriptions=stripe.subscriptions,
        stripe_invoices=stripe.invoices, events=stripe.events,
    )
    for feature, enabled in sorted(p.manual.items()):
        r.entitlements.append({"account_id": acc, "feature": feature, "enabled": enabled, "source": "manual",
                               "updated_at": at(rng.randint(p.created_at, max(p.created_at, p.profile_updated_at)))})
    r.subs_account = {"account_id": acc, "billing_email": p.billing_email, "country": p.country,
                      "currency": p.currency, "payment_method": p.payment_method,
                      "bad_debt": False, "delinquent": False, "updated_at": at(p.profile_updated_at)}
    for b in p.bills:
        created = b.created + rng.randint(1, 20)
        r.invoices.append({
            "invoice_id": b.invoice_id, "account_id": acc, "stripe_invoice_id": b.stripe_id,
            "status": b.status, "currency": p.currency, "amount_due": b.amount,
            "amount_paid": b.amount if b.paid_at is not None else 0,
            "due_at": at(b.due) if b.due is not None else None, "created_at": at(created),
            "updated_at": at(max(created, b.last_change + rng.randint(1, 40))),
        })
        _charges_and_schedules(r, p, b, rng)
    return r


def _charges_and_schedules(r: AccountRecords, p: AccountPlan, b: Bill, rng: random.Random) -> None:
    acc = p.account_id
    charges = [(t, "failed", failure_code(t)) for t in b.fails]
    if b.paid_at is not None and b.amount:
        charges.append((b.paid_at, "succeeded", None))
    ids = b.charge_ids if b.stripe_id else [None] * len(charges)
    rows = [{"charge_id": f"chg_{b.invoice_id[4:]}_{i}", "account_id": acc, "invoice_id": b.invoice_id,
             "stripe_charge_id": ids[i - 1], "amount": b.amount, "status": status,
             "failure_code": code, "created_at": at(t + rng.randint(1, 30))}
            for i, (t, status, code) in enumerate(charges, 1)]
    if b.stripe_id and b.fails and rng.random() < 0.05:  # A3 missed a webhook: Stripe still decides
        rows.pop(0)
    if b.stripe_id and b.status == "open" and rng.random() < 0.03:  # a retry in flight
        rows.append({"charge_id": f"chg_{b.invoice_id[4:]}_p", "account_id": acc, "invoice_id": b.invoice_id,
                     "stripe_charge_id": None, "amount": b.amount, "status": "pending",
                     "failure_code": None, "created_at": at(b.last_change + 45)})
    r.charges.extend(rows)

    attempts = [(t, "done") for t in b.fails]
    if b.fails and b.paid_at is not None:
        attempts.append((b.paid_at, "done"))
    elif b.status == "open" and b.due is not None and len(b.fails) < 8:
        attempts.append(((b.fails[-1] if b.fails else b.due) + 3 * DAY, "pending"))
    elif b.fails and b.status in ("void", "uncollectible"):
        attempts.append(((b.voided_at or b.uncollectible_at) + 60, "cancelled"))
    for n, (t, status) in enumerate(attempts, 1):
        r.schedules.append({"invoice_id": b.invoice_id, "attempt": n, "account_id": acc,
                            "scheduled_at": at(t - rng.randint(0, 30)), "status": status})


def fill_consistent_rows(r: AccountRecords, truth: TrueState, p: AccountPlan, rng: random.Random) -> None:
    """Write every compared column from `truth` (rules v1 §3), with plausible timestamps."""
    acc, s = p.account_id, truth.standing
    troubled = [b for b in p.bills if b.fails or b.status in ("open", "uncollectible")]
    last_money = max([p.created_at, *(b.last_change for b in troubled)])
    for row in r.invoices:
        inv = truth.stripe_invoices.get(row["stripe_invoice_id"]) if row["stripe_invoice_id"] else None
        if inv is not None:
            row["status"], row["amount_paid"] = inv.status, inv.amount_paid
            r.subs_invoice.append({
                "stripe_invoice_id": row["stripe_invoice_id"], "account_id": acc, "status": inv.status,
                "amount_remaining": inv.amount_remaining, "attempt_count": inv.attempt_count,
                "updated_at": row["updated_at"] + timedelta(seconds=rng.randint(0, 30))})

    if s.stage == "none":
        settled = [b.paid_at or b.voided_at or b.uncollectible_at for b in troubled if b.status != "open"]
        since = at(max([p.created_at, *(t for t in settled if t)]))
    else:
        days = STAGE_DAYS[s.stage]
        since = s.oldest_due_at + timedelta(days=days if s.days_overdue >= days else 0)
    touched = max(since, at(last_money)) + timedelta(seconds=rng.randint(5, 300))
    history = bool(troubled) or s.next_action_at is not None
    if s.stage != "none" or (history and rng.random() < 0.8):
        r.dunning = {"account_id": acc, "stage": s.stage, "stage_since": since, "updated_at": touched}
    if r.dunning is not None or s.next_action_at is not None or s.failed_attempts:
        r.subs_dunning = {"account_id": acc, "stage": s.stage, "attempt_count": s.failed_attempts,
                          "next_action_at": s.next_action_at, "updated_at": touched}
    r.subs_account.update(bad_debt=s.bad_debt, delinquent=s.delinquent)
    if s.bad_debt or s.delinquent:
        r.subs_account["updated_at"] = max(r.subs_account["updated_at"], touched)

    if truth.subscription is not None:
        latest = max(p.subscriptions, key=lambda sp: sp.created)
        r.subs_subscription = {
            "account_id": acc, "stripe_subscription_id": truth.subscription.id,
            "status": truth.subscription.status, "current_period_end": truth.subscription.current_period_end,
            "updated_at": at(_last_event(latest) + rng.randint(1, 60))}
    elif p.stale_mapping:  # left over from a migration; Stripe has nothing, so nothing is compared
        r.subs_subscription = {"account_id": acc, "stripe_subscription_id": f"sub_legacy{p.number:06d}",
                               "status": "canceled", "current_period_end": at(p.created_at + 30 * DAY),
                               "updated_at": at(p.created_at + 60)}
    if truth.customer_id is not None:
        created = next(c["created"] for c in r.customers if c["id"] == truth.customer_id)
        r.subs_customer.append({"account_id": acc, "stripe_customer_id": truth.customer_id,
                                "source": p.customer_source, "created_at": at(created + rng.randint(1, 120))})
    elif p.stale_mapping:
        r.subs_customer.append({"account_id": acc, "stripe_customer_id": f"cus_legacy{p.number:06d}",
                                "source": "setup", "created_at": at(p.created_at + 30)})

    changed = p.created_at + 60
    if truth.status == "suspended":
        changed = int(since.timestamp())
    elif truth.status == "closed":
        changed = p.closed_at or changed
    r.account["status"] = truth.status
    r.account["updated_at"] = at(max(p.created_at, changed) + rng.randint(1, 90))
    source = "dunning" if truth.status == "suspended" else "plan"
    for feature in sorted((PLAN_FEATURES[p.plan] | set(p.leftover)) - set(p.manual)):
        r.entitlements.append({"account_id": acc, "feature": feature,
                               "enabled": truth.entitlements[feature],
                               "source": source if feature not in p.leftover else "plan",
                               "updated_at": r.account["updated_at"]})


def _last_event(s: SubPlan) -> int:
    return max(s.last_event, s.created)


def assign_customer_ids(records: list[AccountRecords], first_id: int = 1) -> int:
    """Give subs_customer rows their bigserial ids in account order; returns the next free id."""
    next_id = first_id
    for r in records:
        for row in r.subs_customer:
            row["id"] = next_id
            next_id += 1
    return next_id

