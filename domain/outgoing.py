"""From corrections to what the projector writes besides them: bookkeeping, causes, domain events. Pure.

    bookkeeping(c, state)   the columns rules-v1 §3 has the projector set with a correction
                            (dunning.stage_since, entitlements.source)
    causes(c, state)        the events that justified a correction (TrueState.because refs)
    cause_keys(corrections) the entries of TrueState.because that `causes` reads for them
                            (truth.true_state(..., only=) builds those alone)
    meanings(corrections, state) -> [Meaning]
                            one outgoing domain event per change of meaning, covering its corrections
    event_id(...)           the event's id: uuid5 over account, type, subject, rules version, run
                            and the corrections it covers — the consumers' idempotency key (not the
                            rules digest: a run has one, so the run already fixes it)
    event_body(...)         the published JSON, from the corrections that were really applied

Event types (README "Outgoing domain events"): a change of dunning stage in billing_prod.dunning or
subs_dunning is `account.dunning_stage_changed`; only attempt_count / next_action_at,
`account.dunning_schedule_corrected`; one `account.invoice_state_corrected` per Stripe invoice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from domain.diff import WRITABLE, Correction, as_json, entitlement_source
from domain.state import TrueState

NAMESPACE = uuid.UUID("5b0c4a4e-6f1e-4d3c-9a57-2f0d6c1e7a01")
SCHEMA_VERSION = 1

_TYPE_OF_TABLE = {
    "cf_prod.accounts": "account.status_changed",
    "cf_prod.entitlements": "account.entitlements_changed",
    "subs.subs_account": "account.flags_changed",
    "subs.subs_customer": "account.customer_mapping_corrected",
    "subs.subs_subscription": "account.subscription_corrected",
    "billing_prod.invoices": "account.invoice_state_corrected",
    "subs.subs_invoice": "account.invoice_state_corrected",
}
_DUNNING = ("billing_prod.dunning", "subs.subs_dunning")
EVENT_TYPES = tuple(sorted({*_TYPE_OF_TABLE.values(), "account.dunning_stage_changed",
                            "account.dunning_schedule_corrected"}))

# Which entries of TrueState.because decided each written column (see domain/state.py).
_BECAUSE: dict[str, dict[str, tuple[str, ...]]] = {
    "billing_prod.dunning": {"stage": ("stage", "stage_since")},
    "subs.subs_dunning": {"stage": ("stage",), "attempt_count": ("failed_attempts",),
                          "next_action_at": ("next_action_at", "stage")},
    "subs.subs_account": {"bad_debt": ("bad_debt",), "delinquent": ("delinquent",)},
    "subs.subs_subscription": {c: ("subscription",) for c in WRITABLE["subs.subs_subscription"]},
    "subs.subs_customer": {"stripe_customer_id": ("stripe_customer_id",)},
    "cf_prod.accounts": {"status": ("status",)},
}


@dataclass(frozen=True)
class Meaning:
    """One change of meaning of one account: the event type, what it is about, the corrections it covers."""

    type: str
    subject: str  # "" or the Stripe invoice id of an invoice_state_corrected
    covers: tuple[int, ...]  # indices into the account's corrections


def bookkeeping(c: Correction, state: TrueState) -> dict[str, Any]:
    """Columns set with an update (rules-v1 §3); inserts already carry them in `to`."""
    if c.op != "update":
        return {}
    if c.table == "billing_prod.dunning" and c.column == "stage":
        return {"stage_since": as_json(state.stage_since)}
    if c.table == "cf_prod.entitlements" and c.column == "enabled":
        return {"source": entitlement_source(state)}
    return {}


def written_columns(c: Correction) -> tuple[str, ...]:
    if c.op == "update":
        return (c.column,)  # type: ignore[return-value]
    row = c.to if c.op == "insert" else c.from_
    return tuple(sorted(col for col in row if col in WRITABLE[c.table]))


_FALLBACK_KEYS = (("stage",), ("status",))  # `causes`' entries when a value has no refs of its own


def because_keys(c: Correction) -> tuple[str, ...]:
    keys: list[str] = []
    for column in written_columns(c):
        if c.table == "billing_prod.invoices":
            keys.append(f"invoices.{c.key['invoice_id']}.{column}")  # type: ignore[index]
        elif c.table == "subs.subs_invoice":
            keys.append(f"stripe_invoices.{c.key['stripe_invoice_id']}")  # type: ignore[index]
        elif c.table == "cf_prod.entitlements":
            keys.append(f"entitlements.{(c.key or c.to)['feature']}")
        else:
            keys.extend(_BECAUSE[c.table][column])
    return tuple(dict.fromkeys(keys))


def causes(c: Correction, state: TrueState) -> tuple[str, ...]:
    """The refs of the `because` entries that decided the written columns. A value that holds because
    nothing happened (stage none, 0 attempts, not bad debt) has none of its own: then the events
    that show nothing happened, the account's invoices (`stage`) or, failing those, its row (`status`).
    The correction's drift, when said, adds what caused it (`drift.by`) last."""
    by = (c.drift.by,) if c.drift is not None else ()
    for keys in (because_keys(c), *_FALLBACK_KEYS):
        refs = [ref for key in keys if key in state.because for ref in state.because[key].refs]
        if refs:
            return tuple(dict.fromkeys([*refs, *by]))
    return by


def cause_keys(corrections: Sequence[Correction]) -> frozenset[str]:
    """Every entry of `because` that `causes` reads for `corrections` (with a state whose `because`
    holds these, it says what it says with the whole)."""
    return frozenset(key for c in corrections for key in because_keys(c)).union(*_FALLBACK_KEYS)


def meanings(corrections: Sequence[Correction], state: TrueState) -> list[Meaning]:
    groups: dict[tuple[str, str], list[int]] = {}
    for i, c in enumerate(corrections):
        groups.setdefault(_group(c, state), []).append(i)
    found = []
    for (kind, subject), covers in groups.items():
        if kind == "dunning":
            stage_moves = any(_moves_stage(corrections[i]) for i in covers)
            kind = "account.dunning_stage_changed" if stage_moves else "account.dunning_schedule_corrected"
        found.append(Meaning(type=kind, subject=subject, covers=tuple(covers)))
    return sorted(found, key=lambda m: (m.type, m.subject))


def _group(c: Correction, state: TrueState) -> tuple[str, str]:
    if c.table in _DUNNING:
        return "dunning", ""
    if c.table == "subs.subs_invoice":
        return _TYPE_OF_TABLE[c.table], c.key["stripe_invoice_id"]  # type: ignore[index]
    if c.table == "billing_prod.invoices":
        invoice_id = c.key["invoice_id"]  # type: ignore[index]
        truth = state.invoices.get(invoice_id)
        return _TYPE_OF_TABLE[c.table], (truth.stripe_invoice_id if truth and truth.stripe_invoice_id else invoice_id)
    return _TYPE_OF_TABLE[c.table], ""


def _moves_stage(c: Correction) -> bool:
    if c.op == "update":
        return c.column == "stage"
    return c.op == "insert" and c.to.get("stage", "none") != "none"


def event_id(account_id: str, meaning: Meaning, rules_version: str, run_id: str,
             corrections: Sequence[Correction]) -> str:
    """Deterministic: the same intent of the same run always has the same id (it is stored, then
    re-published under it). The run is part of it because the same correction can truly happen
    twice (a legacy writer undoes it and the next run redoes it): consumers must not drop that one."""
    covered = sorted(_canonical(corrections[i]) for i in meaning.covers)
    name = "|".join([account_id, meaning.type, meaning.subject, rules_version, run_id, *covered])
    return str(uuid.uuid5(NAMESPACE, name))


def event_body(*, event_id: str, type: str, account_id: str, subject: str, rules_version: str,
               rules_digest: str | None, run_id: str, as_of: datetime, occurred_at: datetime,
               applied: Sequence[tuple[Correction, Sequence[str]]], plan_digest: str | None = None) -> dict[str, Any]:
    """The published JSON of one event, from the corrections that were applied and their causes.
    `rules_digest` is None only for an intent recorded before digests were; `plan_digest` names the
    saved plan the corrections came from (`apply --plan`), and is left out otherwise."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for c, _ in applied:
        ref = row_ref(c)
        if c.op == "update":
            before.setdefault(ref, {})[c.column] = c.from_
            after.setdefault(ref, {})[c.column] = c.to
        else:
            before[ref], after[ref] = c.from_, c.to
    return {
        "schema": SCHEMA_VERSION, "id": event_id, "type": type, "account_id": account_id,
        "subject": subject or None, "occurred_at": occurred_at.isoformat(), "as_of": as_of.isoformat(),
        "rules_version": rules_version, "rules_digest": rules_digest, "run_id": run_id, "before": before, "after": after,
        "causes": list(dict.fromkeys(ref for _, refs in applied for ref in refs)),
        "corrections": [c.as_json() for c, _ in applied],
        **({"plan_digest": plan_digest} if plan_digest else {}),
    }


def row_ref(c: Correction) -> str:
    """e.g. `subs.subs_dunning[account_id=acc_000042]`; an insert into subs_customer: `[new]`."""
    if c.key is None:
        return f"{c.table}[new]"
    return f"{c.table}[{','.join(f'{k}={c.key[k]}' for k in sorted(c.key))}]"


def _canonical(c: Correction) -> str:
    """What names a correction in an event id: its change, not what is said of its drift."""
    return orjson.dumps(c.without_drift().as_json(), option=orjson.OPT_SORT_KEYS).decode()
