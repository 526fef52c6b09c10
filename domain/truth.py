"""The true state of an account at an instant (rules-v1 §2), with why each value is what it is.

    true_state(facts, catalog, rules, at) -> TrueState       pure
    true_state(..., only=keys)                               pure: `because` of those keys alone
    ruled_fields(facts, catalog, rules, at) -> RuledFields   pure: only what the rules decide
    read_state(facts, catalog, rules, at, names, along=...)  pure: those fields alone (the drift walk's)

`at` is normally the `as_of` the facts were folded at; it may be later (re-evaluating when
`next_action_at` comes, with no new event) but not earlier, since the facts would then hold events
from after `at`. The state and its `because` are described in domain/state.py.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any, NamedTuple

from domain.catalog import Catalog
from domain.dunning import (
    DAY,
    StageSince,
    Standing,
    next_action,
    next_action_at,
    stage_since,
    standing,
)
from domain.facts import AccountFacts, InvoiceFact
from domain.rules import Rules
from domain.state import (
    DELINQUENT_STAGES,
    Because,
    TrueInvoice,
    TrueState,
    TrueStripeInvoice,
    TrueSubscription,
)
from domain.trusted import trusted

__all__ = ["ALWAYS_READ", "Along", "Because", "RuledFields", "TrueState", "decided_until", "facts_read", "read_state",
           "restated", "ruled_fields", "true_state"]


def _because(rule: str, *refs: str) -> Because:
    """The refs given, each once, the empty ones left out (one ref, the common case, without a
    dict: a follower deciding with reasons builds four for each invoice; 6% of its step, measured)."""
    if len(refs) == 1:
        return trusted(Because, rule=rule, refs=refs if refs[0] else ())
    return trusted(Because, rule=rule, refs=tuple(dict.fromkeys(r for r in refs if r)))


_NO_REASON = Because(rule="")


# The entries of `because` whose refs another entry's repeat (what `only` must keep for them).
_READS_REFS_OF = {"status": ("stage",), "delinquent": ("stage",), "bad_debt": ("days_overdue",)}


class Reasons(dict[str, Any]):
    """`because`, being written. With `explain` off it records nothing (plan does not show reasons,
    and building them is most of true_state's cost), and reads give an empty reason. With `only`,
    it records those entries alone (and those whose refs they repeat: _READS_REFS_OF)."""

    def __init__(self, *, explain: bool, only: Collection[str] | None = None) -> None:
        super().__init__()
        self.explain = explain
        self.only: frozenset[str] | None = None
        self._invoice_ids: frozenset[str] = frozenset()
        if only is not None:
            keys = set(only)
            keys.update(k for key in only for k in _READS_REFS_OF.get(key, ()))
            self.only = frozenset(keys)
            self._invoice_ids = frozenset(k.removeprefix("invoices.").rpartition(".")[0]
                                          for k in keys if k.startswith("invoices."))

    def wants(self, name: str) -> bool:
        return self.explain and (self.only is None or name in self.only)

    def wants_invoice(self, invoice_id: str) -> bool:
        """Whether some entry of the invoice (`invoices.<id>.<field>`) is wanted."""
        return self.explain and (self.only is None or invoice_id in self._invoice_ids)

    def note(self, name: str, rule: str, *refs: str) -> None:
        if self.explain and (self.only is None or name in self.only):
            self[name] = _because(rule, *refs)

    def __missing__(self, name: str) -> Because:
        if self.wants(name):
            raise KeyError(name)
        return _NO_REASON


def _decider_refs(invoice: InvoiceFact) -> tuple[str, ...]:
    if invoice.stripe_ref is not None:
        return invoice.row_ref, invoice.stripe_ref
    return (invoice.row_ref, *invoice.charge_refs)


class Along:
    """What `true_state` carries from one instant of an account to the next (the drift walk's, at
    every instant: domain/drift.py): `stage_since` along a history the facts' is a prefix of
    (dunning.StageSince), and each invoice's true form, made again only when its fact is another
    (the fold keeps the fact of an invoice nothing touched: the same object)."""

    __slots__ = ("stages", "_invoices", "_catalog", "_entitlements")

    def __init__(self, stages: StageSince) -> None:
        self.stages = stages
        self._invoices: dict[str, tuple[InvoiceFact, TrueInvoice]] = {}
        self._catalog: Catalog | None = None
        self._entitlements: dict[tuple[Any, ...], dict[str, bool]] = {}

    def invoice(self, fact: InvoiceFact) -> TrueInvoice:
        kept = self._invoices.get(fact.invoice_id)
        if kept is None or kept[0] is not fact:
            kept = self._invoices[fact.invoice_id] = (fact, _true_invoice(fact))
        return kept[1]

    def entitlements(self, facts: AccountFacts, catalog: Catalog, status: str) -> dict[str, bool]:
        """`_entitlements` without reasons, made again only when what it reads is another: the
        account's plan (or none), the status, the manual features, the catalog. Shared: not to be
        changed (read_state's, which only the diff reads)."""
        if catalog is not self._catalog:
            self._catalog, self._entitlements = catalog, {}
        account = facts.account
        key = (account is None, account.plan if account is not None else None, status,
               tuple(facts.manual_entitlements))
        found = self._entitlements.get(key)
        if found is None:
            found = self._entitlements[key] = _entitlements(facts, catalog, status, Reasons(explain=False))
        return found


def true_state(facts: AccountFacts, catalog: Catalog, rules: Rules, at: datetime, *,
               explain: bool = True, along: Along | None = None, only: Collection[str] | None = None) -> TrueState:
    """The true state at `at`; with explain=False its `because` is left empty (the rest is identical).
    `along`: what the instants before of the same account made, under the same rules (Along); it
    gives what is made afresh without it. `only`: `because` holds those entries alone (each as
    the whole would hold it; an entry the state has no such field for is simply not there): what
    a correction's causes read (domain/outgoing.cause_keys) costs a few entries, not four an invoice."""
    stages = along.stages if along is not None else None
    if stages is not None and stages.rules is not rules and stages.rules != rules:
        raise ValueError("stages were made under other rules")
    _check(facts, at)
    because = Reasons(explain=explain, only=only)
    views = _views(facts)
    now = standing(views, rules, at)
    if explain:
        _explain_dunning(now, facts, rules, because)
    since, since_why, since_refs = (stage_since(facts.dunning_history, rules, at) if stages is None
                                    else stages.since(facts.dunning_history, at))
    if explain:
        because.note("stage_since",
            f"stage {now.stage} since {'ever' if since is None else since.isoformat()}: {since_why}", *since_refs)
    next_at, next_why = next_action(views, rules, at)
    because.note("next_action_at", next_why)

    account = facts.account
    closed = account is not None and account.closed
    status = _status(facts, now.stage)
    account_refs = (account.ref,) if account is not None else ()
    because.note("plan", 
        "cf_prod.accounts decides the plan" if account else "the account is not in cf_prod.accounts", *account_refs)
    because.note("status", 
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
        invoices=_invoices(facts, because, along), stripe_invoices=_stripe_invoices(facts, because),
        stripe_customer_id=_customer(facts, because), subscription=_subscription(facts, because),
        because=dict(because),
    )


# Computed by `read_state` whatever `names` asks (what the drift walk's `_origin` and
# `decided_until` read besides the diff): the standing and next_action are made anyway.
ALWAYS_READ = ("account_id", "as_of", "rules_version", "account_exists", "stage", "days_overdue", "failed_attempts",
               "bad_debt", "delinquent", "past_due_invoices", "next_action_at")


# What read_state reads of the facts for each field of the state (besides the account and the
# invoices, read whatever it is asked): the drift walk folds those alone (authority.resolve_facts `only`).
_FACTS_FOR = {
    "stage_since": ("dunning_history",), "entitlements": ("manual_entitlements",),
    "manual_features": ("manual_entitlements",), "stripe_invoices": ("stripe_invoices",),
    "stripe_customer_id": ("stripe_customer",), "subscription": ("subscription",),
}


def facts_read(names: Collection[str]) -> frozenset[str]:
    """The fields of the facts that `read_state(..., names)` reads."""
    return frozenset(("account", "invoices", *(f for name in names for f in _FACTS_FOR.get(name, ()))))


def read_state(facts: AccountFacts, catalog: Catalog, rules: Rules, at: datetime, names: Collection[str], *,
               along: Along) -> tuple[TrueState, datetime | None]:
    """`true_state(facts, catalog, rules, at, explain=False, along=along)` with only the fields
    `names` and ALWAYS_READ (each as the whole state has it; reading another raises
    AttributeError), and the whole state's `decided_until`. What the drift walk decides at each
    instant (domain/drift.py): its diff reads a few fields (diff.read_by), and the rest (the
    invoices' true forms, the Stripe side, the plan) was most of true_state's cost. Of `facts` it
    reads `facts_read(names)` alone."""
    stages = along.stages
    if stages.rules is not rules and stages.rules != rules:
        raise ValueError("stages were made under other rules")
    _check(facts, at)
    views = _views(facts)
    now = standing(views, rules, at)
    next_at = next_action_at(views, rules, at)
    account = facts.account
    fields: dict[str, Any] = {
        "account_id": facts.account_id, "as_of": at, "rules_version": rules.version,
        "account_exists": account is not None, "stage": now.stage, "days_overdue": now.days_overdue,
        "failed_attempts": now.failed_attempts, "bad_debt": now.bad_debt,
        "delinquent": now.stage in DELINQUENT_STAGES, "past_due_invoices": tuple(i.invoice_id for i in now.past_due),
        "next_action_at": next_at}
    no_reasons = Reasons(explain=False)
    for name in names:
        if name in fields:
            continue
        if name == "stage_since":
            fields[name] = stages.since(facts.dunning_history, at)[0]
        elif name == "status":
            fields[name] = _status(facts, now.stage)
        elif name == "entitlements":
            fields[name] = along.entitlements(facts, catalog, _status(facts, now.stage))
        elif name == "plan":
            fields[name] = account.plan if account else None
        elif name == "manual_features":
            fields[name] = tuple(sorted(facts.manual_entitlements))
        elif name == "invoices":
            fields[name] = _invoices(facts, no_reasons, along)
        elif name == "stripe_invoices":
            fields[name] = _stripe_invoices(facts, no_reasons)
        elif name == "stripe_customer_id":
            fields[name] = _customer(facts, no_reasons)
        elif name == "subscription":
            fields[name] = _subscription(facts, no_reasons)
        elif name == "because":
            fields[name] = {}
        else:
            raise ValueError(f"true_state has no field {name!r}")
    return trusted(TrueState, **fields), _until(at, facts.invoices.values(), next_at)


class RuledFields(NamedTuple):
    """The fields of `true_state` that the rules decide, by their names there (what backfill
    compares between two rules: projections/read_model/changes.py)."""

    stage: str
    bad_debt: bool
    delinquent: bool
    status: str
    failed_attempts: int
    next_action_at: datetime | None
    entitlements: dict[str, bool]


def ruled_fields(facts: AccountFacts, catalog: Catalog, rules: Rules, at: datetime) -> RuledFields:
    """Those fields of `true_state(facts, catalog, rules, at)`, equal to its, without the rest
    (no stage_since, invoices, Stripe side or reasons): a third of its cost on a generated fleet."""
    _check(facts, at)
    views = _views(facts)
    now = standing(views, rules, at)
    status = _status(facts, now.stage)
    return RuledFields(now.stage, now.bad_debt, now.stage in DELINQUENT_STAGES, status, now.failed_attempts,
                       next_action(views, rules, at)[0], _entitlements(facts, catalog, status, Reasons(explain=False)))


def _check(facts: AccountFacts, at: datetime) -> None:
    if at.tzinfo is None:
        raise ValueError("at must be an aware datetime (with an offset)")
    if at < facts.as_of:
        raise ValueError(f"at ({at.isoformat()}) is before the facts' as_of ({facts.as_of.isoformat()})")


def _views(facts: AccountFacts) -> list[InvoiceFact]:
    """The invoices as the dunning rules read them (dunning.Due): their facts as they are."""
    return list(facts.invoices.values())


def _status(facts: AccountFacts, stage: str) -> str:
    if facts.account is not None and facts.account.closed:
        return "closed"
    return "suspended" if stage == "suspended" else "active"


def _explain_dunning(now: Standing, facts: AccountFacts, rules: Rules, because: Reasons) -> None:
    u_refs = [r for i in now.past_due for r in _decider_refs(facts.invoices[i.invoice_id])]
    if now.rule is None:
        because.note("stage", "stage = none: no invoice is open and past due",
                                    *(i.row_ref for i in facts.invoices.values()))
    else:
        held = ", ".join(now.held) or "no condition: always applies"
        because.note("stage", f"stage = {now.stage}: rule '{now.rule.name}' ({held})", *u_refs)
    if now.past_due:
        oldest = facts.invoices[now.past_due[0].invoice_id]
        because.note("days_overdue", 
            f"days_overdue = {now.days_overdue}: whole days since {oldest.invoice_id} fell due "
            f"at {oldest.due_at.isoformat()}", oldest.row_ref)  # type: ignore[union-attr]
        terms = " + ".join(f"{i.invoice_id} {i.attempt_count}" for i in now.past_due)
        because.note("failed_attempts", f"failed_attempts = {now.failed_attempts}: {terms}", *u_refs)
    else:
        because.note("days_overdue", "days_overdue = 0: nothing is past due")
        because.note("failed_attempts", "failed_attempts = 0: nothing is past due")
    if now.uncollectible:
        because.note("bad_debt", 
            f"bad_debt: invoice {', '.join(now.uncollectible)} is uncollectible",
            *(r for i in now.uncollectible for r in _decider_refs(facts.invoices[i])))
    elif now.bad_debt:
        because.note("bad_debt", 
            f"bad_debt: days_overdue {now.days_overdue} >= {rules.bad_debt_days_overdue}",
            *because["days_overdue"].refs)
    else:
        because.note("bad_debt", 
            f"not bad_debt: no invoice uncollectible, days_overdue {now.days_overdue} < {rules.bad_debt_days_overdue}")
    delinquent = now.stage in DELINQUENT_STAGES
    because.note("delinquent", 
        f"stage {now.stage} is {'' if delinquent else 'not '}one of {', '.join(DELINQUENT_STAGES)}",
        *because["stage"].refs)


def _entitlements(facts: AccountFacts, catalog: Catalog, status: str, because: Reasons) -> dict[str, bool]:
    account = facts.account
    plan = "free" if status == "suspended" else account.plan if account else None
    result = {}
    for feature in catalog.features:
        explain = because.wants(f"entitlements.{feature}")  # the reasons' text is most of the cost
        if feature in facts.manual_entitlements:
            continue
        if account is None:
            enabled, why = False, "the account is not in cf_prod.accounts"
        elif status == "closed":
            enabled, why = False, "the account is closed"
        elif plan not in catalog.plans:  # decides nothing: the plan holds these rows (domain/held.py)
            enabled = False
            why = f"{status}: plan '{plan}' is not in product_config, so {feature} is held" if explain else ""
        else:
            enabled = catalog.includes(plan, feature)
            why = (f"{status}: plan '{plan}' {'includes' if enabled else 'does not include'} {feature} "
                   "(cf_prod.product_config)") if explain else ""
        result[feature] = enabled
        if explain:
            because.note(f"entitlements.{feature}", why, *(account.ref,) if account else ())
    return result


def _true_invoice(i: InvoiceFact) -> TrueInvoice:
    return trusted(
        TrueInvoice, invoice_id=i.invoice_id, stripe_invoice_id=i.stripe_invoice_id, status=i.status,
        currency=i.currency, amount_due=i.amount_due, amount_paid=i.amount_paid,
        amount_remaining=i.amount_due - i.amount_paid,
        attempt_count=i.attempt_count, due_at=i.due_at)


def _invoices(facts: AccountFacts, because: Reasons, along: Along | None) -> dict[str, TrueInvoice]:
    result = {}
    for invoice_id, i in facts.invoices.items():
        result[invoice_id] = along.invoice(i) if along is not None else _true_invoice(i)
        if because.wants_invoice(invoice_id):  # the reasons' text is most of the cost: built only when shown
            key = f"invoices.{invoice_id}"
            if i.authority == "stripe":
                why = f"Stripe invoice {i.stripe_invoice_id} decides it (the invoice has a stripe_invoice_id Stripe knows)"
                because.note(f"{key}.status", f"status = {i.status}: {why}", i.stripe_ref or "")
                because.note(f"{key}.amount_paid", f"amount_paid = {i.amount_paid}: {why}", i.stripe_ref or "")
                because.note(f"{key}.attempt_count", f"attempt_count = {i.attempt_count}: {why}", i.stripe_ref or "")
            else:
                why = ("billing_prod.invoices decides it (no stripe_invoice_id)" if not i.stripe_invoice_id
                       else f"billing_prod.invoices decides it (Stripe does not know {i.stripe_invoice_id})")
                because.note(f"{key}.status", f"status = {i.status}: {why}", i.row_ref)
                because.note(f"{key}.amount_paid", f"amount_paid = {i.amount_paid}: {why}", i.row_ref)
                because.note(f"{key}.attempt_count", 
                    f"attempt_count = {i.attempt_count}: the number of its billing_prod.charges", *i.charge_refs)
            because.note(f"{key}.amount_due", f"amount_due = {i.amount_due}: billing_prod.invoices", i.row_ref)
    return result


def _stripe_invoices(facts: AccountFacts, because: Reasons) -> dict[str, TrueStripeInvoice]:
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
        if because.wants(f"stripe_invoices.{sid}"):
            because.note(f"stripe_invoices.{sid}",
                f"status {s.status}, attempt_count {s.attempt_count}, amount_paid {s.amount_paid}: the Stripe invoice; "
                f"amount_due {amount_due}: " + ("billing_prod.invoices" if billing else "Stripe (no billing invoice)"),
                s.ref, billing.row_ref if billing else "")
    return result


def _customer(facts: AccountFacts, because: Reasons) -> str | None:
    c = facts.stripe_customer
    if c is None:
        because.note("stripe_customer_id", 
            f"no Stripe customer, not deleted, has metadata.account_id = {facts.account_id}")
        return None
    because.note("stripe_customer_id", 
        f"the earliest-created Stripe customer, not deleted, with metadata.account_id = {facts.account_id}", c.ref)
    return c.customer_id


def _subscription(facts: AccountFacts, because: Reasons) -> TrueSubscription | None:
    s = facts.subscription
    if s is None:
        because.note("subscription", "Stripe has no subscription for the account")
        return None
    because.note("subscription", "the account's Stripe subscription with the latest created", s.ref)
    return trusted(TrueSubscription, subscription_id=s.subscription_id, status=s.status,
                   current_period_end=s.current_period_end)


def decided_until(state: TrueState) -> datetime | None:
    """Until when (exclusive; None: for ever) `state` stays what true_state says at any later
    instant, but for `as_of` and `days_overdue` (see `restated`), while no event arrives.

    With the facts fixed, the standing moves only at crossings (domain/dunning.py). Stage and
    bad_debt hold until next_action_at (rules-v1 §2), so do stage_since, status, delinquent, the
    entitlements and next_action_at itself; failed_attempts and past_due_invoices also move when
    an open invoice falls due without changing the stage, so the earliest such due_at after
    as_of ends it too. The invoices, Stripe invoices, customer and subscription are the facts'."""
    return _until(state.as_of, state.invoices.values(), state.next_action_at)


def _until(at: datetime, invoices: Iterable[TrueInvoice | InvoiceFact], next_at: datetime | None) -> datetime | None:
    """`decided_until` from the state's invoices (or their facts: the same status and due_at)."""
    ends = [i.due_at for i in invoices if i.status == "open" and i.due_at is not None and i.due_at > at]
    if next_at is not None:
        ends.append(next_at)
    return min(ends, default=None)


def restated(state: TrueState, at: datetime, rules: Rules) -> TrueState:
    """`state` (true_state at state.as_of, explain off) as true_state would say it at `at`, for
    state.as_of <= at < decided_until(state): the same but for as_of, the rules' version name and
    days_overdue, which counts whole days since the oldest past-due invoice fell due."""
    days = 0
    if state.past_due_invoices:
        due = state.invoices[state.past_due_invoices[0]].due_at
        days = (at - due) // DAY  # type: ignore[operator]
    return state.model_copy(update={"as_of": at, "rules_version": rules.version, "days_overdue": days})
