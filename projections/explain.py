"""`explain`: replay one account to say what its state is and why.

The shell (`explain`) reads the account's stream through the eventsourcing library, the catalog
stream, the account's parked records and past corrections; everything else is pure: the timeline
lines, the fold, the true state with its `because`, the corrections and the rows held from them
(domain/held.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from domain.catalog import fold_catalog
from domain.diff import Correction, corrections_for
from domain.drift import PastCorrection, drift_origins, recorded_rows, with_drift
from domain.events import CATALOG_STREAM, AccountEvent, LegacyRowObserved, StripeObjectObserved
from domain.fold import fold
from domain.held import HeldRow, ParkedRecord, hold
from domain.legacy_tables import TABLES
from domain.owners import NO_OVERRIDES, Owners
from domain.refs import key_text, ref_of
from domain.rules import Rules
from domain.state import TrueState
from domain.truth import true_state
from eventlog.parked import parked_records
from eventlog.postgres_log import PostgresEventLog
from eventlog.protocol import EventLog
from eventlog.stores import Stores
from projections.apply.audit import account_audit

# The columns worth a glance in a one-line summary of a legacy row, per table of domain/legacy_tables.py.
_SUMMARY_COLUMNS = {
    "accounts": ("plan", "status"), "entitlements": ("feature", "enabled", "source"),
    "invoices": ("status", "amount_due", "amount_paid", "due_at"), "charges": ("invoice_id", "status", "failure_code"),
    "dunning": ("stage",), "schedules": ("attempt", "status", "scheduled_at"),
    "subs_account": ("bad_debt", "delinquent"), "subs_customer": ("stripe_customer_id", "source"),
    "subs_dunning": ("stage", "attempt_count", "next_action_at"),
    "subs_subscription": ("stripe_subscription_id", "status", "current_period_end"),
    "subs_invoice": ("status", "amount_remaining", "attempt_count"),
}
if unknown := set(_SUMMARY_COLUMNS) - {spec.table for spec in TABLES}:  # pragma: no cover
    raise ImportError(f"explain._SUMMARY_COLUMNS names {', '.join(sorted(unknown))}: not in domain.legacy_tables")
_STRIPE_COLUMNS = ("status", "amount_due", "amount_paid", "attempt_count", "customer")


@dataclass(frozen=True)
class Explanation:
    account_id: str
    as_of: datetime
    state: TrueState
    timeline: list[dict[str, Any]]
    later_events: int
    corrections: list[Correction]
    held: list[HeldRow] = field(default_factory=list)  # rows no correction is planned for, and why
    past_corrections: list[dict[str, Any]] = field(default_factory=list)  # applied by `apply`, from the audit
    rules_digest: str = ""
    parked: list[ParkedRecord] = field(default_factory=list)  # what ingest parked of the account

    def as_json(self) -> dict[str, Any]:
        state = self.state.model_dump(mode="json", exclude={"because"})
        return {
            "account_id": self.account_id,
            "as_of": self.as_of.isoformat(),
            "rules_version": self.state.rules_version,
            "rules_digest": self.rules_digest,
            "state": state,
            "timeline": self.timeline,
            "because": {name: {"rule": why.rule, "events": list(why.refs)} for name, why in self.state.because.items()},
            "corrections": [c.as_json() for c in self.corrections],
            "held": [h.as_json() for h in self.held],
            "past_corrections": self.past_corrections,
            "parked": [p.as_json() for p in self.parked],
        }


def explain(stores: Stores, account_id: str, rules: Rules, as_of: datetime, *,
            log: EventLog | None = None, owners: Owners = NO_OVERRIDES) -> Explanation:
    """`log`: an open log to read through (a long-lived process opens it once); else one is opened here."""
    if log is None:
        with PostgresEventLog(stores) as opened:
            events, catalog_events = read_streams(opened, account_id)
    else:
        events, catalog_events = read_streams(log, account_id)
    with stores.connect(purpose="explain") as conn:  # one connection for the parked records and the audit
        parked = parked_records(conn, account_id)
        past, shown = account_audit(conn, account_id)
    holding = [row for row in (record.held_row(account_id) for record in parked) if row is not None]
    return replace(explanation(account_id, events, catalog_events, rules, as_of, parked=holding, owners=owners,
                               past=past),
                   past_corrections=shown, parked=parked)


def read_streams(log: EventLog, account_id: str) -> tuple[list[AccountEvent], list[AccountEvent]]:
    """What `explanation` replays: the account's stream and the catalog's."""
    return log.stream(account_id), log.stream(CATALOG_STREAM)


def explanation(account_id: str, events: list[AccountEvent], catalog_events: list[AccountEvent],
                rules: Rules, as_of: datetime, *, parked: Sequence[HeldRow] = (), owners: Owners = NO_OVERRIDES,
                past: Sequence[PastCorrection] = ()) -> Explanation:
    """Pure: the whole explanation from the account's events and the catalog's.

    The drift is against the legacy rows as the log recorded them up to T, not as they are now:
    that is what "as of T" can mean for a T in the past, and it is what the timeline shows.
    (`plan` and `apply` read the live rows.)"""
    facts = fold(events, as_of=as_of)
    catalog = fold_catalog(catalog_events, as_of=as_of)
    state = true_state(facts, catalog, rules, as_of)
    folded = sorted((e for e in events if e.source_time <= as_of),
                    key=lambda e: (e.source_time, e.originator_version))
    rows = recorded_rows(facts)
    corrections, held = hold(state, catalog, parked, rows, corrections_for(state, rows))
    corrections = with_drift(corrections, drift_origins(corrections, events, catalog, rules, as_of, owners=owners,
                                                        past=past))
    return Explanation(
        account_id=account_id, as_of=as_of, state=state, timeline=[timeline_entry(e) for e in folded],
        later_events=len(events) - len(folded), corrections=corrections, held=held,
        rules_digest=rules.digest,
    )


def timeline_entry(event: AccountEvent) -> dict[str, Any]:
    if isinstance(event, StripeObjectObserved):
        kind = event.event_type or f"listed {event.table}"
        fields = {c: event.object.get(c) for c in _STRIPE_COLUMNS if event.object.get(c) is not None}
        data: dict[str, Any] | None = event.object
        summary = f"{event.table} {event.object_id}" + ("" if not fields else " " + _pairs(fields))
    else:
        assert isinstance(event, LegacyRowObserved)
        kind = "row deleted" if event.row is None else "row observed"
        key = key_text(event.key)
        fields = {c: event.row.get(c) for c in _SUMMARY_COLUMNS.get(event.table, ())} if event.row else {}
        data = event.row
        summary = f"{event.table} {key}" + (" gone" if event.row is None else " " + _pairs(fields))
    return {"time": event.source_time.isoformat(), "source": f"{event.store}", "type": kind, "ref": ref_of(event),
            "summary": summary, "data": data, "version": event.originator_version}


def _record_summary(parked: ParkedRecord) -> str:
    """What was parked, in a line: the columns worth a glance of a legacy row, or a Stripe record's id and type."""
    record = parked.record if isinstance(parked.record, dict) else {"record": parked.record}
    if parked.source == "stripe":
        return _pairs({k: record.get(k) for k in ("id", "type", "object") if record.get(k) is not None})
    columns = _SUMMARY_COLUMNS.get(parked.table.split(".", 1)[1], ())
    return _pairs({c: record.get(c) for c in columns} or record)


def _pairs(fields: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in fields.items())


def render_text(ex: Explanation) -> str:
    """For people (projections/explain_text.py)."""
    from projections.explain_text import render_text as render

    return render(ex)
