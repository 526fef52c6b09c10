"""`explain` for people: an Explanation (projections/explain.py) as text under ~120 columns.

    render_text(ex) -> str
    render_brief(ex, fields) -> list[str]    a few fields, the drift and what apply did (the demo)

Events are named by their short refs (domain/refs.py `short_refs`, numbered in timeline order),
the same in the timeline, in the state's reasons and in the past corrections. The timeline is
grouped by source, each event at its source time; each field of the true state comes with the
rule that decided it and the first few events it cites.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from domain.diff import Correction
from domain.legacy_tables import STORES
from domain.refs import key_text, short_refs, shorten
from domain.state import Because, TrueState
from projections.explain import _record_summary

WIDTH = 118
FEW = 4  # refs shown per field; the rest are counted
_SOURCES = (*STORES, "stripe")
_GROUPED = ("entitlements.", "invoices.", "stripe_invoices.")  # shown grouped, after the account's own fields
_FIRST_FIELDS = ("status", "stage", "stage_since", "days_overdue", "failed_attempts", "bad_debt", "delinquent",
                 "next_action_at", "plan", "stripe_customer_id", "subscription")


def render_text(ex: Any) -> str:
    """`ex`: a projections.explain.Explanation."""
    short = short_refs(entry["ref"] for entry in ex.timeline)
    state: TrueState = ex.state
    lines = [f"account {ex.account_id} as of {ex.as_of.isoformat()} (rules {state.rules_version}; times are UTC)", ""]
    lines += _timeline(ex.timeline, ex.later_events, short)
    lines += ["", "true state: each field, because of which rule and which events"]
    lines += _state(state, short)
    lines += ["", f"corrections ({len(ex.corrections)}), each with where its drift came from"]
    for c in ex.corrections:
        lines += _wrap("  ", _change(c.op, c.table, c.key, c.column, c.from_, c.to))
        lines += _wrap("      ", drift_words(c, short)) if c.drift is not None else []
    lines += ["", f"held, not corrected ({len(ex.held)})"]
    for h in ex.held:
        lines.append(f"  {h.table}[{key_text(h.key)}]" + (f" (parked {_time(h.parked_at.isoformat())})"
                                                           if h.parked_at else ""))
        lines += _wrap("      ", h.reason)
    lines += ["", f"parked records ({len(ex.parked)})"]
    for p in ex.parked:
        holds = "  [holds the row]" if p.held else "  [superseded]" if p.source != "stripe" else ""
        lines.append(f"  {_time(p.parked_at.isoformat())}  {p.table}[{key_text(p.key)}]{holds}")
        lines += _wrap("      ", p.reason) + _wrap("      the record: ", _record_summary(p))
    lines += _section(f"past corrections ({len(ex.past_corrections)})",
                      [f"{_time(p['applied_at'])}  " + _change(p["op"], p["table"], p["key"], p["column"], p["from"],
                                                               p["to"])
                       + f"  (rules {p['rules_version']}, run {p['run_id'][:8]}; because "
                       + (_refs(p["causes"], short) or "-") + ")" for p in ex.past_corrections])
    return "\n".join(lines)


def render_brief(ex: Any, fields: Sequence[str]) -> list[str]:
    """A few fields of the state with their reasons, then the account's corrections and past corrections."""
    short = short_refs(entry["ref"] for entry in ex.timeline)
    lines = _state(ex.state, short, only=fields)
    lines += [line for c in ex.corrections for line in _wrap("  drift  ", _change(c.op, c.table, c.key, c.column,
                                                                                   c.from_, c.to))]
    for p in ex.past_corrections:
        lines += _wrap("  applied  ", f"{_time(p['applied_at'])}  " + _change(p["op"], p["table"], p["key"],
                                                                            p["column"], p["from"], p["to"])
                       + f"  (because {_refs(p['causes'], short) or '-'})")
    return lines


def _timeline(timeline: Sequence[Mapping[str, Any]], later: int, short: Mapping[str, str]) -> list[str]:
    lines = [f"timeline: {len(timeline)} events by source, each at its source time"
             + (f" ({later} later ones not folded)" if later else "")]
    by_source: dict[str, list[Mapping[str, Any]]] = {}
    for entry in timeline:
        by_source.setdefault(entry["source"], []).append(entry)
    order = [s for s in _SOURCES if s in by_source] + sorted(set(by_source) - set(_SOURCES))
    width = max((len(shorten(e["ref"], short)) for e in timeline), default=0)
    width = min(width, 44)
    for source in order:
        lines.append(f"  {source} ({len(by_source[source])})")
        for entry in by_source[source]:
            ref = shorten(entry["ref"], short)
            head = f"    {_time(entry['time'])}  {ref:<{width}}  "
            lines += _wrap(head, _what(entry, ref))
    return lines


def _what(entry: Mapping[str, Any], ref: str) -> str:
    """What the event says, without what its ref already names (the table and key)."""
    summary = str(entry["summary"])
    kind = str(entry["type"])
    if "[" in ref:  # the ref names the table and key: drop them from the summary ("table key rest")
        summary = " ".join(summary.split(" ")[2:])
    if kind == "row observed":
        return summary
    return f"{kind}: {summary}" if summary else kind


def _state(state: TrueState, short: Mapping[str, str], *, only: Sequence[str] = ()) -> list[str]:
    because = state.because
    names = [n for n in _FIRST_FIELDS if n in because or n != "subscription"]
    names += [n for n in because if n not in names and not n.startswith(_GROUPED)]
    if only:
        names = [n for n in only if n in names]
    rows = [(name, _value(state, name), _reason(name, because.get(name), short)) for name in names]
    if not only:
        rows += _entitlements(state, short) + _invoices(state, short)
    width = min(max(len(name) for name, _, _ in rows), 24)
    value_width = min(max(len(value) for _, value, _ in rows), 22)
    lines = []
    for name, value, reason in rows:
        head = f"  {name:<{width}} {value:<{value_width}} "
        if len(head) > 2 + width + value_width + 2:  # a long value: the reason goes on the next line
            lines.append(head.rstrip())
            head = " " * (2 + width + 1 + value_width + 1)
        lines += _wrap(head, reason)
    return lines


def _invoices(state: TrueState, short: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """Per invoice, its fields grouped by the rule and events that decided them: one line each group."""
    rows = []
    for invoice_id in sorted(state.invoices):
        groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        for name, why in state.because.items():
            head, _, column = name.rpartition(".")
            if head == f"invoices.{invoice_id}":
                rule = re.sub(rf"^{re.escape(column)} = [^:]*: ", "", why.rule)
                groups.setdefault((rule, tuple(dict.fromkeys(why.refs))), []).append(
                    f"{column}={_value(state, name)}")
        for i, ((rule, refs), fields) in enumerate(groups.items()):
            rows.append(("invoice" if i == 0 else "", invoice_id if i == 0 else "",
                         f"{' '.join(fields)}: {rule}" + (f"; from {_refs(refs, short)}" if refs else "")))
    for name, why in state.because.items():
        if name.startswith("stripe_invoices."):
            rows.append(("stripe invoice", name.split(".", 1)[1], f"{_value(state, name)}: "
                         + _reason(name, why, short)))
    return rows


def _entitlements(state: TrueState, short: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """One line per (on/off, rule, events): a plan's ten features are two lines, not ten."""
    groups: dict[tuple[bool, str, tuple[str, ...]], list[str]] = {}
    for feature, on in sorted(state.entitlements.items()):
        why = state.because.get(f"entitlements.{feature}")
        rule = why.rule.replace(feature, "{}") if why else ""
        groups.setdefault((on, rule, tuple(dict.fromkeys(why.refs)) if why else ()), []).append(feature)
    rows = []
    for (on, rule, refs), features in groups.items():
        said = rule.replace("{}", "them" if len(features) > 1 else features[0])
        rows.append(("entitlements", "on" if on else "off",
                     f"{', '.join(features)}: {said}" + (f"; from {_refs(refs, short)}" if refs else "")))
    return rows


def _reason(name: str, why: Because | None, short: Mapping[str, str]) -> str:
    if why is None:
        return ""
    leaf = name.rsplit(".", 1)[-1]
    rule = re.sub(rf"^{re.escape(leaf)} = [^:]*: ", "", why.rule)
    refs = list(dict.fromkeys(why.refs))
    return rule + (f"; from {_refs(refs, short)}" if refs else "")


def _refs(refs: Sequence[str], short: Mapping[str, str]) -> str:
    shown = ", ".join(shorten(ref, short) for ref in refs[:FEW])
    return shown + (f" and {len(refs) - FEW} more" if len(refs) > FEW else "")


def _value(state: TrueState, name: str) -> str:
    head, _, rest = name.partition(".")
    if head == "entitlements" and rest:
        return "on" if state.entitlements.get(rest) else "off"
    if head == "invoices" and rest:
        invoice_id, _, column = rest.rpartition(".")
        invoice = state.invoices.get(invoice_id)
        return _plain(getattr(invoice, column, None)) if invoice else "-"
    if head == "stripe_invoices" and rest:
        found = state.stripe_invoices.get(rest)
        return f"{found.status}, {found.attempt_count} attempts" if found else "-"
    if name == "subscription":
        sub = state.subscription
        return f"{sub.subscription_id} {sub.status}" if sub else "none"
    return _plain(getattr(state, name, None))


def _plain(value: Any) -> str:
    return _time(value.isoformat()) if isinstance(value, datetime) else str(value)


def _change(op: str, table: str, key: Mapping[str, Any] | None, column: str | None, before: Any, after: Any) -> str:
    where = f"{table}[{key_text(dict(key)) if key else 'new'}]" + (f".{column}" if column else "")
    return f"{op:<6} {where}  {_short_value(before)} -> {_short_value(after)}"


def _short_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={v}" for k, v in value.items()) + "}"
    return repr(value)


def _section(title: str, items: Sequence[str]) -> list[str]:
    lines = ["", title]
    for item in items:
        lines += _wrap("  ", item)
    return lines


def _wrap(head: str, text: str) -> list[str]:
    if not text:
        return [head.rstrip()]
    return textwrap.wrap(text, width=WIDTH, initial_indent=head, subsequent_indent=" " * (len(head) if len(head) <= 72 else 8),
                         break_on_hyphens=False, break_long_words=True) or [head.rstrip()]


def _time(iso: str) -> str:
    """2026-03-01T00:00:00.123+00:00 -> 2026-03-01 00:00:00 (times are UTC)."""
    return iso[:19].replace("T", " ")


_CAUSE_WORDS = {"wrong_write": "wrong write", "missed_change": "missed change", "missing": "missing",
                "overwrote_correction": "overwrote a correction"}


def drift_words(c: Correction, short: Mapping[str, str] | None = None) -> str:
    """Where a correction's drift came from, in a sentence (cli.md's causes), e.g. "subs_dunning.stage
    has been 'retrying' since 2026-02-11 09:30:00, when Stripe's evt_1 changed it; its writer (A3) did not follow"."""
    d = c.drift
    if d is None:
        return ""
    table = c.table.split(".", 1)[1]
    where = f"{table}.{c.column}" if c.column else f"{table}[{key_text(dict(c.key)) if c.key else 'new'}]"
    since = _time(d.since.isoformat())
    by = _by_words(d.by, short or {})
    again = f"; written over {d.rewrites} time{'s' if d.rewrites != 1 else ''} since the projector corrected it" \
        if d.rewrites else ""
    if d.cause == "missed_change":
        said = (f"{where} has been {_short_value(c.from_)} since {since}, when {by} made it {_short_value(c.to)}; "
                f"its writer ({d.owner}) did not follow")
    elif d.cause == "wrong_write":
        said = f"{where} was set to {_short_value(c.from_)} at {since} by {by}, a write of {d.owner}'s the truth never had"
    elif d.cause == "overwrote_correction":
        said = (f"{where} was corrected by the projector, then set to {_short_value(c.from_)} again at {since} "
                f"by {by} ({d.owner})")
    elif c.op == "insert":
        said = f"{where} has been missing since {since}, when {by} called for it; its writer ({d.owner}) did not write it"
    else:
        said = f"{where} has been missing since {since}, deleted by {by} ({d.owner})"
    return f"[{_CAUSE_WORDS[d.cause]}] {said}{again}"


def _by_words(by: str, short: Mapping[str, str]) -> str:
    if by.startswith("rule:"):
        name, _, at = by[len("rule:"):].partition("@")
        return f"the rules' threshold for {name} (crossed at {_time(at)})"
    if by.startswith("evt_"):
        return f"Stripe's {by}"
    return shorten(by, short)
