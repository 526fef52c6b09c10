"""Which corrections make one account's legacy rows agree with its true state (rules v1 §3), and
how to compare two lists of corrections.

Corrections are dicts in the `spec/cli.md` shape: {"account_id", "table", "op", "key", "column",
"from", "to"}, with timestamps as ISO 8601 strings with offset and money as integers.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import orjson

from simulation.oracle.expected_state import TrueState
from simulation.records import AccountRecords

Correction = dict[str, Any]

# The columns of an inserted (`to`) or deleted (`from`) row that the contract compares.
ROW_CONTRACT: dict[str, tuple[str, ...]] = {
    "billing_prod.dunning": ("account_id", "stage"),
    "subs.subs_dunning": ("account_id", "stage", "attempt_count", "next_action_at"),
    "subs.subs_invoice": ("stripe_invoice_id", "account_id", "status", "amount_remaining", "attempt_count"),
    "subs.subs_subscription": ("account_id", "stripe_subscription_id", "status", "current_period_end"),
    "subs.subs_customer": ("account_id", "stripe_customer_id"),
    "cf_prod.entitlements": ("account_id", "feature", "enabled"),
}
DELETE_CONTRACT: dict[str, tuple[str, ...]] = {"subs.subs_customer": ("stripe_customer_id",)}


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _update(account_id: str, table: str, key: dict, column: str, old: Any, new: Any) -> Correction:
    return {"account_id": account_id, "table": table, "op": "update", "key": key,
            "column": column, "from": _json(old), "to": _json(new)}


def _insert(account_id: str, table: str, key: dict | None, row: dict) -> Correction:
    return {"account_id": account_id, "table": table, "op": "insert", "key": key,
            "column": None, "from": None, "to": {k: _json(v) for k, v in row.items()}}


def _compare(out: list, account_id: str, table: str, key: dict, row: dict, want: dict) -> None:
    for column, value in want.items():
        if row[column] != value:
            out.append(_update(account_id, table, key, column, row[column], value))


def plan_corrections(truth: TrueState, records: AccountRecords) -> list[Correction]:
    """The corrections rules v1 §3 asks for, in a stable order."""
    acc = truth.account_id
    s = truth.standing
    out: list[Correction] = []

    for row in records.invoices:
        inv = truth.stripe_invoices.get(row["stripe_invoice_id"]) if row["stripe_invoice_id"] else None
        if inv is not None:
            _compare(out, acc, "billing_prod.invoices", {"invoice_id": row["invoice_id"]}, row,
                     {"status": inv.status, "amount_paid": inv.amount_paid})

    cached = {r["stripe_invoice_id"]: r for r in records.subs_invoice}
    for sid, inv in truth.stripe_invoices.items():
        want = {"status": inv.status, "amount_remaining": inv.amount_remaining,
                "attempt_count": inv.attempt_count}
        if sid in cached:
            _compare(out, acc, "subs.subs_invoice", {"stripe_invoice_id": sid}, cached[sid], want)
        else:
            out.append(_insert(acc, "subs.subs_invoice", {"stripe_invoice_id": sid},
                               {"stripe_invoice_id": sid, "account_id": acc, **want}))

    key = {"account_id": acc}
    if records.dunning is not None:
        _compare(out, acc, "billing_prod.dunning", key, records.dunning, {"stage": s.stage})
    elif s.stage != "none":
        out.append(_insert(acc, "billing_prod.dunning", key, {"account_id": acc, "stage": s.stage}))

    want = {"stage": s.stage, "attempt_count": s.failed_attempts, "next_action_at": s.next_action_at}
    if records.subs_dunning is not None:
        _compare(out, acc, "subs.subs_dunning", key, records.subs_dunning, want)
    elif want != {"stage": "none", "attempt_count": 0, "next_action_at": None}:
        out.append(_insert(acc, "subs.subs_dunning", key, {"account_id": acc, **want}))

    if records.subs_account:
        _compare(out, acc, "subs.subs_account", key, records.subs_account,
                 {"bad_debt": s.bad_debt, "delinquent": s.delinquent})

    sub = truth.subscription
    if sub is not None:
        want = {"stripe_subscription_id": sub.id, "status": sub.status,
                "current_period_end": sub.current_period_end}
        if records.subs_subscription is not None:
            _compare(out, acc, "subs.subs_subscription", key, records.subs_subscription, want)
        else:
            out.append(_insert(acc, "subs.subs_subscription", key, {"account_id": acc, **want}))

    if truth.customer_id is not None:
        out.extend(_customer_corrections(acc, truth.customer_id, records.subs_customer))

    _compare(out, acc, "cf_prod.accounts", key, records.account, {"status": truth.status})

    rows = {e["feature"]: e for e in records.entitlements}
    source = "dunning" if truth.status == "suspended" else "plan"
    for feature, enabled in truth.entitlements.items():
        ekey = {"account_id": acc, "feature": feature}
        if feature in rows:
            _compare(out, acc, "cf_prod.entitlements", ekey, rows[feature], {"enabled": enabled})
        elif enabled:
            out.append(_insert(acc, "cf_prod.entitlements", ekey,
                               {"account_id": acc, "feature": feature, "enabled": True, "source": source}))
    return out


def _customer_corrections(acc: str, customer_id: str, rows: list[dict]) -> list[Correction]:
    if not rows:
        return [_insert(acc, "subs.subs_customer", None,
                        {"account_id": acc, "stripe_customer_id": customer_id, "source": "setup"})]
    rows = sorted(rows, key=lambda r: r["id"])
    keep = next((r for r in rows if r["stripe_customer_id"] == customer_id), None)
    out = []
    if keep is None:
        keep = rows[0]
        out.append(_update(acc, "subs.subs_customer", {"id": keep["id"]}, "stripe_customer_id",
                           keep["stripe_customer_id"], customer_id))
    for r in rows:
        if r is not keep:
            out.append({"account_id": acc, "table": "subs.subs_customer", "op": "delete",
                        "key": {"id": r["id"]}, "column": None,
                        "from": {"stripe_customer_id": r["stripe_customer_id"]}, "to": None})
    return out


def correction_kind(c: Correction) -> str:
    """`table:op[:column]`, e.g. `subs.subs_dunning:update:stage` — what the drift kinds are named by."""
    return f"{c['table']}:{c['op']}" + (f":{c['column']}" if c["op"] == "update" else "")


def _norm(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if isinstance(value, dict):
        return tuple(sorted((k, _norm(v)) for k, v in value.items()))
    return value


def _canonical(c: Correction) -> tuple:
    table, op = c.get("table"), c.get("op")
    base = (c.get("account_id"), table, op, _norm(c.get("key")))
    if op == "update":
        return (*base, c.get("column"), _norm(c.get("from")), _norm(c.get("to")))
    side = c.get("to") if op == "insert" else c.get("from")
    side = side if isinstance(side, dict) else {}
    contract = ROW_CONTRACT if op == "insert" else DELETE_CONTRACT
    columns = contract.get(str(table), ())
    return (*base, None, tuple((col, _norm(side.get(col, "<absent>"))) for col in columns))


def compare_corrections(expected: list[Correction], actual: list[Correction]) -> list[str]:
    """Human-readable differences between two correction lists; empty when they agree.

    Updates compare exactly (timestamps by instant); inserts on table, key and the contract
    columns of `to` (`stage_since`, `updated_at`, `source` are ignored); deletes on table, key and
    the contract columns of `from`. Order does not matter; duplicates count.
    """
    want, got = Counter(map(_canonical, expected)), Counter(map(_canonical, actual))
    missing, extra = want - got, got - want
    by_canon = {_canonical(c): c for c in [*expected, *actual]}
    diffs = []
    for canon, n in sorted(missing.items(), key=repr):
        diffs.append(f"missing ({n}x): {orjson.dumps(by_canon[canon]).decode()}")
    for canon, n in sorted(extra.items(), key=repr):
        diffs.append(f"unexpected ({n}x): {orjson.dumps(by_canon[canon]).decode()}")
    return diffs
