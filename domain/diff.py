"""The minimal corrections that make an account's legacy rows hold its true state (rules-v1 §3). Pure.

    corrections_for(state, rows) -> list[Correction]

`rows` maps "store.table" to the account's current legacy rows, as PostgreSQL's `row_to_json`
gives them (timestamps ISO strings, money integers). Only the columns §3 names are compared, only
drifting columns of drifting rows become updates, a missing row is inserted only when its true
value is not what absence already means, and nothing is ever proposed for the never-written
tables and columns. An account that cf_prod does not know gets no corrections at all: cf_prod
is the authority for existence, so there is nothing true to write.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from domain.facts import row_key
from domain.legacy_tables import BY_NAME, CORRECTION_ORDER, correctable
from domain.state import TrueState
from domain.trusted import trusted

Row = Mapping[str, Any]
NO_DUNNING = {"stage": "none", "attempt_count": 0, "next_action_at": None}

# The only columns the projector may ever write, per table (rules-v1 §3): the writer refuses others.
WRITABLE: dict[str, frozenset[str]] = {
    table: frozenset(correctable(BY_NAME[table]).compared) for table in CORRECTION_ORDER
}


Cause = Literal["wrong_write", "missed_change", "missing", "overwrote_correction"]
CAUSES: tuple[Cause, ...] = ("wrong_write", "missed_change", "missing", "overwrote_correction")


class Drift(BaseModel):
    """Where one correction's drift came from (cli.md, "Where drift comes from"; domain/drift.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cause: Cause
    since: datetime
    owner: str
    by: str
    rewrites: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"cause": self.cause, "since": self.since.isoformat(), "owner": self.owner, "by": self.by,
                "rewrites": self.rewrites}


class Correction(BaseModel):
    """One change to one legacy row, in the JSON shape of cli.md (`from` is a Python keyword: `from_`).
    `drift` is where its drift came from, once domain/drift.py has said it (None until then)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    account_id: str
    table: str
    op: Literal["update", "insert", "delete"]
    key: dict[str, Any] | None
    column: str | None
    from_: Any = Field(alias="from")
    to: Any
    drift: Drift | None = None

    def as_json(self) -> dict[str, Any]:
        found = self.model_dump(mode="json", by_alias=True, exclude={"drift"})
        if self.drift is not None:
            found["drift"] = self.drift.as_json()
        return found

    def without_drift(self) -> Correction:
        return self if self.drift is None else self.model_copy(update={"drift": None})


def corrections_for(state: TrueState, rows: Mapping[str, Sequence[Row]], *,
                    only: Collection[str] | None = None) -> list[Correction]:
    """`only`: the corrections of these tables ("store.table") and no others (all when None)."""
    found = _diff(state, rows, only, _Differ(state.account_id)).found
    order = {table: i for i, table in enumerate(CORRECTION_ORDER)}
    return sorted(found, key=lambda c: (order[c.table], _sort_text(c.key), c.op, c.column or ""))


Target = tuple[str, str, str | None, str | None]  # a correction's table, op, row key (facts.row_key), column


def target(table: str, op: str, key: Mapping[str, Any] | None, column: str | None) -> Target:
    return table, op, None if key is None else row_key(key), column


def targets_for(state: TrueState, rows: Mapping[str, Sequence[Row]], *,
                only: Collection[str] | None = None) -> frozenset[Target]:
    """The targets of `corrections_for(state, rows, only=only)`, without making the corrections
    (the drift walk asks this at every instant of an account: domain/drift.py)."""
    return frozenset(_diff(state, rows, only, _Differ(state.account_id, targets_only=True)).targets)


def _diff(state: TrueState, rows: Mapping[str, Sequence[Row]], only: Collection[str] | None,
          diff: _Differ) -> _Differ:
    if state.account_exists and state.account_id is not None:
        for section in sections_of(only):
            section.run(state, rows, diff)
    return diff


def sections_of(only: Collection[str] | None) -> list[Section]:
    """The parts of the diff that `only` asks for (all when None): those correcting one of its tables."""
    return [section for section in SECTIONS if only is None or not section.tables.isdisjoint(only)]


def read_by(section: Section, state: TrueState) -> tuple[Any, ...]:
    """What `section` reads of `state`: for two states equal in it, the section finds the same
    corrections in the same rows (the drift walk diffs a part again only when this moved)."""
    return state.account_exists, state.account_id, *[getattr(state, name) for name in section.reads]


class _Differ:
    """What the sections find: the corrections, built `trusted` (no validation: every field is made
    here from a valid state and rows, the table and op are ours, the values JSON), or with
    `targets_only` just their targets (a diff runs at every instant of the drift walk, where
    validating corrections was a fifth of `explain`)."""

    def __init__(self, account_id: str | None, *, targets_only: bool = False) -> None:
        self.account_id = account_id
        self.targets_only = targets_only
        self.found: list[Correction] = []
        self.targets: set[Target] = set()

    def _add(self, table: str, op: str, key: dict[str, Any] | None, column: str | None, from_: Any, to: Any) -> None:
        if self.targets_only:
            self.targets.add(target(table, op, key, column))
            return
        self.found.append(trusted(Correction, account_id=self.account_id, table=table, op=op,
                                  key=None if key is None else dict(key), column=column, from_=from_, to=to,
                                  drift=None))

    def row(self, table: str, key: dict[str, Any], current: Row, wanted: Mapping[str, Any]) -> None:
        for column, value in wanted.items():
            if not same(current.get(column), value):
                self._add(table, "update", key, column, current.get(column), as_json(value))

    def insert(self, table: str, key: dict[str, Any] | None, new_row: Mapping[str, Any]) -> None:
        self._add(table, "insert", key, None, None,
                  None if self.targets_only else {k: as_json(v) for k, v in new_row.items()})

    def delete(self, table: str, key: dict[str, Any], old_row: Row) -> None:
        self._add(table, "delete", key, None, dict(old_row), None)


def _invoices(state: TrueState, rows: Mapping[str, Sequence[Row]], diff: _Differ) -> None:
    billing = {row["invoice_id"]: row for row in rows.get("billing_prod.invoices", ())}
    cached = {row["stripe_invoice_id"]: row for row in rows.get("subs.subs_invoice", ())}
    for stripe_id, truth in sorted(state.stripe_invoices.items()):
        if truth.invoice_id is not None and truth.invoice_id in billing:
            diff.row("billing_prod.invoices", {"invoice_id": truth.invoice_id}, billing[truth.invoice_id],
                     {"status": truth.status, "amount_paid": truth.amount_paid})
        wanted = {"status": truth.status, "amount_remaining": truth.amount_remaining,
                  "attempt_count": truth.attempt_count}
        if stripe_id in cached:
            diff.row("subs.subs_invoice", {"stripe_invoice_id": stripe_id}, cached[stripe_id], wanted)
        else:
            diff.insert("subs.subs_invoice", {"stripe_invoice_id": stripe_id},
                        {"stripe_invoice_id": stripe_id, "account_id": state.account_id, **wanted})


def _billing_dunning(state: TrueState, rows: Mapping[str, Sequence[Row]], diff: _Differ) -> None:
    key = {"account_id": state.account_id}
    billing = _the_row(rows, "billing_prod.dunning")
    if billing is not None:
        diff.row("billing_prod.dunning", key, billing, {"stage": state.stage})
    elif state.stage != "none":
        diff.insert("billing_prod.dunning", key,
                    {"account_id": state.account_id, "stage": state.stage, "stage_since": state.stage_since})


def _subs_dunning(state: TrueState, rows: Mapping[str, Sequence[Row]], diff: _Differ) -> None:
    key = {"account_id": state.account_id}
    wanted = {"stage": state.stage, "attempt_count": state.failed_attempts, "next_action_at": state.next_action_at}
    subs = _the_row(rows, "subs.subs_dunning")
    if subs is not None:
        diff.row("subs.subs_dunning", key, subs, wanted)
    elif any(not same(NO_DUNNING[column], value) for column, value in wanted.items()):
        diff.insert("subs.subs_dunning", key, {"account_id": state.account_id, **wanted})


def _flags(state: TrueState, rows: Mapping[str, Sequence[Row]], diff: _Differ) -> None:
    """subs_account is A1's profile row: corrected when present, never created (its profile is not ours)."""
    account = _the_row(rows, "subs.subs_account")
    if account is not None:
        diff.row("subs.subs_account", {"account_id": state.account_id}, account,
                 {"bad_debt": state.bad_debt, "delinquent": state.delinquent})


def _subscription(state: TrueState, rows: Mapping[str, Sequence[Row]], diff: _Differ) -> None:
    truth = state.subscription
    if truth is None:
        return
    wanted = {"status": truth.status, "stripe_subscription_id": truth.subscription_id,
              "current_period_end": truth.current_period_end}
    current = _the_row(rows, "subs.subs_subscription")
    if current is not None:
        diff.row("subs.subs_subscription", {"account_id": state.account_id}, current, wanted)
    else:
        diff.insert("subs.subs_subscription", {"account_id": state.account_id},
                    {"account_id": state.account_id, **wanted})


def _customer(state: TrueState, rows: Mapping[str, Sequence[Row]], diff: _Differ) -> None:
    """Exactly one row with the true id: keep the lowest-id row holding it (else fix the lowest-id row)."""
    true_id = state.stripe_customer_id
    if true_id is None:
        return
    mappings = sorted(rows.get("subs.subs_customer", ()), key=lambda row: row["id"])
    if not mappings:
        diff.insert("subs.subs_customer", None,
                    {"account_id": state.account_id, "stripe_customer_id": true_id, "source": "setup"})
        return
    keep = next((row for row in mappings if row["stripe_customer_id"] == true_id), mappings[0])
    diff.row("subs.subs_customer", {"id": keep["id"]}, keep, {"stripe_customer_id": true_id})
    for row in mappings:
        if row is not keep:
            diff.delete("subs.subs_customer", {"id": row["id"]}, row)


def _account(state: TrueState, rows: Mapping[str, Sequence[Row]], diff: _Differ) -> None:
    account = _the_row(rows, "cf_prod.accounts")
    if account is not None:
        diff.row("cf_prod.accounts", {"account_id": state.account_id}, account, {"status": state.status})


def _entitlements(state: TrueState, rows: Mapping[str, Sequence[Row]], diff: _Differ) -> None:
    """Non-manual rows hold the true value (a feature in no plan: false); a missing row only when enabled."""
    current = {row["feature"]: row for row in rows.get("cf_prod.entitlements", ())}
    for feature, row in sorted(current.items()):
        if row.get("source") != "manual":
            diff.row("cf_prod.entitlements", {"account_id": state.account_id, "feature": feature}, row,
                     {"enabled": state.entitlements.get(feature, False)})
    for feature, enabled in sorted(state.entitlements.items()):
        if feature not in current and enabled:
            diff.insert("cf_prod.entitlements", {"account_id": state.account_id, "feature": feature},
                        {"account_id": state.account_id, "feature": feature, "enabled": True,
                         "source": entitlement_source(state)})


class Section(NamedTuple):
    """A part of the diff: the tables it corrects, the state's fields it reads (besides
    account_exists and account_id, which every part reads: `read_by`), and the part itself."""

    tables: frozenset[str]
    reads: tuple[str, ...]
    run: Callable[[TrueState, Mapping[str, Sequence[Row]], _Differ], None]


SECTIONS: tuple[Section, ...] = (
    Section(frozenset({"billing_prod.invoices", "subs.subs_invoice"}), ("stripe_invoices",), _invoices),
    Section(frozenset({"billing_prod.dunning"}), ("stage", "stage_since"), _billing_dunning),
    Section(frozenset({"subs.subs_dunning"}), ("stage", "failed_attempts", "next_action_at"), _subs_dunning),
    Section(frozenset({"subs.subs_account"}), ("bad_debt", "delinquent"), _flags),
    Section(frozenset({"subs.subs_subscription"}), ("subscription",), _subscription),
    Section(frozenset({"subs.subs_customer"}), ("stripe_customer_id",), _customer),
    Section(frozenset({"cf_prod.accounts"}), ("status",), _account),
    Section(frozenset({"cf_prod.entitlements"}), ("entitlements", "status"), _entitlements),
)


def entitlement_source(state: TrueState) -> str:
    """What the projector writes in entitlements.source (rules-v1 §3)."""
    return "dunning" if state.status == "suspended" else "plan"


def _the_row(rows: Mapping[str, Sequence[Row]], table: str) -> Row | None:
    found = rows.get(table, ())
    return found[0] if found else None


def same(current: Any, true_value: Any) -> bool:
    """Equal as values: instants compare as instants whatever their text, everything else exactly."""
    if isinstance(true_value, datetime) or isinstance(current, datetime):
        return _instant(current) == _instant(true_value)
    if isinstance(true_value, bool) or isinstance(current, bool):
        return current is true_value
    return bool(current == true_value)


def _instant(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None


def as_json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _sort_text(key: dict[str, Any] | None) -> str:
    return "" if key is None else "/".join(f"{k}={key[k]}" for k in sorted(key))
