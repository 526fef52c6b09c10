"""The true state of an account at an instant (rules-v1 §2), with why each value is what it is.

    true_state(facts, catalog, rules, at) -> TrueState       pure

`at` is normally the `as_of` the facts were folded at; it may be later (re-evaluating when
`next_action_at` comes, with no new event) but not earlier, since the facts would then hold events
from after `at`. The state and its `because` are described in domain/state.py.
"""

from __future__ import annotations

from datetime import datetime

from domain.catalog import Catalog
from domain.dunning import DunningInvoice, Standing, next_action, stage_since, standing
from domain.facts import AccountFacts, InvoiceFact, trusted
from domain.rules import Rules
from domain.state import (
    DELINQUENT_STAGES,
    Because,
    TrueInvoice,
    TrueState,
    TrueStripeInvoice,
    TrueSubscription,
)

__all__ = ["Because", "TrueState", "true_state"]


def _because(rule: str, *refs: str) -> Because:
    return trusted(Because, rule=rule, refs=tuple(dict.fromkeys(r for r in refs if r)))


def _decider_refs(invoice: InvoiceFact) -> tuple[str, ...]:
    if invoice.stripe_ref is not None:
        return invoice.row_ref, invoice.stripe_ref
    return (invoice.row_ref, *invoice.charge_refs)


def true_state(facts: AccountFacts, catalog: Catalog, rules: Rules, at: datetime) -> TrueState:
    if at.tzinfo is None:
        raise ValueError("at must be an aware datetime (with an offset)")
    if at < facts.as_of:
        raise ValueError(f"at ({at.isoformat()}) is before the facts' as_of ({facts.as_of.isoformat()})")
    because: dict[str, Because] = {}
    views = [DunningInvoice(i.invoice_id, i.status, i.due_at, i.attempt_count) for i in facts.invoices.values()]
    now = standing(views, rules, at)
    _explain_dunning(now, facts, rules, because)
    since, since_why, since_refs = stage_since(facts.dunning_history, rules, at)
    because["stage_since"] = _because(
        f"stage {now.stage} since {'ever' if since is None else since.isoformat()}: {since_why}", *since_refs)
    next_at, next_why = next_action(views, rules, at)
    because["next_action_at"] = _because(next_why)

    account = facts.account
    closed = account is not None and account.closed
    status = "closed" if closed else "suspended" if now.stage == "suspended" else "active"
    account_refs = (account.ref,) if account is not None else ()
    because["plan"] = _because(
        "cf_prod.accounts decides the plan" if account else "the account is not in cf_prod.accounts", *account_refs)
    because["status"] = _because(
        "the account is closed (cf_prod.accounts status 'closed')" if closed
        else "stage is suspended" if status == "suspended"
        else "not closed and stage is not suspended", *account_refs, *because["stage"].refs)
    entitlements = _entitlements(facts, catalog, status, because)
    return trusted(
        TrueState, account_id=facts.account_id, as_of=at, rules_version=rules.version,
        account_exists=account is not None, plan=account.plan if account else None, status=status,
        stage=now.stage, stage_since=since, days_overdue=now.days_overdue,
        failed_attempts=now.failed_attempts, bad_debt=now.bad_debt,
        delinquent=now.stage in DELINQUENT_STAGES, next_action_at=next_at,
        past_due_invoices=tuple(i.invoice_id for i in now.past_due),
        entitlements=entitlements, manual_features=tuple(sorted(facts.manual_entitlements)),
        invoices=_invoices(facts, because), stripe_invoices=_stripe_invoices(facts, because),
        stripe_customer_id=_customer(facts, because), subscription=_subscription(facts, because),
        because=because,
    )


def _explain_dunning(now: Standing, facts: AccountFacts, rules: Rules, because: dict[str, Because]) -> None:
    u_refs = [r for i in now.past_due for r in _decider_refs(facts.invoices[i.invoice_id])]
    if now.rule is None:
        because["stage"] = _because("stage = none: no invoice is open and past due",
                                    *(i.row_ref for i in facts.invoices.values()))
    else:
        held = ", ".join(now.held) or "no condition: always applies"
        because["stage"] = _because(f"stage = {now.stage}: rule '{now.rule.name}' ({held})", *u_refs)
    if now.past_due:
        oldest = facts.invoices[now.past_due[0].invoice_id]
        because["days_overdue"] = _because(
            f"days_overdue = {now.days_overdue}: whole days since {oldest.invoice_id} fell due "
            f"at {oldest.due_at.isoformat()}", oldest.row_ref)  # type: ignore[union-attr]
        terms = " + ".join(f"{i.invoice_id} {i.attempt_count}" for i in now.past_due)
        because["failed_attempts"] = _because(f"failed_attempts = {now.failed_attempts}: {terms}", *u_refs)
    else:
        because["days_overdue"] = _because("days_overdue = 0: nothing is past due")
        because["failed_attempts"] = _because("failed_attempts = 0: nothing is past due")
    if now.uncollectible:
        because["bad_debt"] = _because(
            f"bad_debt: invoice {', '.join(now.uncollectible)} is uncollectible",
            *(r for i in now.uncollectible for r in _decider_refs(facts.invoices[i])))
    elif now.bad_debt:
        because["bad_debt"] = _because(
            f"bad_debt: days_overdue {now.days_overdue} >= {rules.bad_debt_days_overdue}",
            *because["days_overdue"].refs)
    else:
        because["bad_debt"] = _because(
            f"not bad_debt: no invoice uncollectible, days_overdue {now.days_overdue} < {rules.bad_debt_days_overdue}")
    delinquent = now.stage in DELINQUENT_STAGES
    because["delinquent"] = _because(
        f"stage {now.stage} is {'' if delinquent else 'not '}one of {', '.join(DELINQUENT_STAGES)}",
        *because["stage"].refs)


def _entitlements(facts: AccountFacts, catalog: Catalog, status: str, because: dict[str, Because]) -> dict[str, bool]:
    account = facts.account
    plan = "free" if status == "suspended" else account.plan if account else None
    result = {}
    for feature in catalog.features:
        if feature in facts.manual_entitlements:
            continue
        if account is None:
            enabled, why = False, "the account is not in cf_prod.accounts"
        elif status == "closed":
            enabled, why = False, "the account is closed"
        else:
            enabled = catalog.includes(plan, feature)
            why = (f"{status}: plan '{plan}' {'includes' if enabled else 'does not include'} {feature} "
                   "(cf_prod.product_config)")
        result[feature] = enabled
        because[f"entitlements.{feature}"] = _because(why, *(account.ref,) if account else ())
    return result


def _invoices(facts: AccountFacts, because: dict[str, Because]) -> dict[str, TrueInvoice]:
    result = {}
    for invoice_id, i in facts.invoices.items():
        result[invoice_id] = trusted(
            TrueInvoice, invoice_id=invoice_id, stripe_invoice_id=i.stripe_invoice_id, status=i.status,
            currency=i.currency, amount_due=i.amount_due, amount_paid=i.amount_paid,
            amount_remaining=i.amount_due - i.amount_paid,
            attempt_count=i.attempt_count, due_at=i.due_at)
        key = f"invoices.{invoice_id}"
        if i.authority == "stripe":
            why = f"Stripe invoice {i.stripe_invoice_id} decides it (the invoice has a stripe_invoice_id Stripe knows)"
            because[f"{key}.status"] = _because(f"status = {i.status}: {why}", i.stripe_ref or "")
            because[f"{key}.amount_paid"] = _because(f"amount_paid = {i.amount_paid}: {why}", i.stripe_ref or "")
            because[f"{key}.attempt_count"] = _because(f"attempt_count = {i.attempt_count}: {why}", i.stripe_ref or "")
        else:
            why = ("billing_prod.invoices decides it (no stripe_invoice_id)" if not i.stripe_invoice_id
                   else f"billing_prod.invoices decides it (Stripe does not know {i.stripe_invoice_id})")
            because[f"{key}.status"] = _because(f"status = {i.status}: {why}", i.row_ref)
            because[f"{key}.amount_paid"] = _because(f"amount_paid = {i.amount_paid}: {why}", i.row_ref)
            because[f"{key}.attempt_count"] = _because(
                f"attempt_count = {i.attempt_count}: the number of its billing_prod.charges", *i.charge_refs)
        because[f"{key}.amount_due"] = _because(f"amount_due = {i.amount_due}: billing_prod.invoices", i.row_ref)
    return result


def _stripe_invoices(facts: AccountFacts, because: dict[str, Because]) -> dict[str, TrueStripeInvoice]:
    linked = {i.stripe_invoice_id: i for i in facts.invoices.values() if i.stripe_invoice_id}
    result = {}
    for sid, s in facts.stripe_invoices.items():
        if s.deleted:
            continue
        billing = linked.get(sid)
        amount_due = billing.amount_due if billing is not None else s.amount_due
        result[sid] = trusted(
            TrueStripeInvoice, stripe_invoice_id=sid, invoice_id=billing.invoice_id if billing else None,
            status=s.status, amount_due=amount_due, amount_paid=s.amount_paid,
            amount_remaining=amount_due - s.amount_paid,
            attempt_count=s.attempt_count)
        because[f"stripe_invoices.{sid}"] = _because(
            f"status {s.status}, attempt_count {s.attempt_count}, amount_paid {s.amount_paid}: the Stripe invoice; "
            f"amount_due {amount_due}: " + ("billing_prod.invoices" if billing else "Stripe (no billing invoice)"),
            s.ref, billing.row_ref if billing else "")
    return result


def _customer(facts: AccountFacts, because: dict[str, Because]) -> str | None:
    c = facts.stripe_customer
    if c is None:
        because["stripe_customer_id"] = _because(
            f"no Stripe customer, not deleted, has metadata.account_id = {facts.account_id}")
        return None
    because["stripe_customer_id"] = _because(
        f"the earliest-created Stripe customer, not deleted, with metadata.account_id = {facts.account_id}", c.ref)
    return c.customer_id


def _subscription(facts: AccountFacts, because: dict[str, Because]) -> TrueSubscription | None:
    s = facts.subscription
    if s is None:
        because["subscription"] = _because("Stripe has no subscription for the account")
        return None
    because["subscription"] = _because("the account's Stripe subscription with the latest created", s.ref)
    return trusted(TrueSubscription, subscription_id=s.subscription_id, status=s.status,
                   current_period_end=s.current_period_end)
