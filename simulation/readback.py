"""Read a fleet back from its databases and Stripe world, and ask the oracle what still drifts.

    left = oracle_corrections(dsns, stripe_dir, now)   # [] once every correction is applied

Useful after `recompute apply`: the independent oracle then says whether the stores agree with
the true state, without trusting anything the projector wrote about itself.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from simulation.legacy_schema import LEGACY_COLUMNS
from simulation.oracle.expected_corrections import plan_corrections
from simulation.oracle.expected_state import true_state
from simulation.oracle.rules_v1 import Thresholds
from simulation.records import AccountRecords
from simulation.stripe_world import StripeWorld

_SINGLE = {"accounts": "account", "dunning": "dunning", "subs_account": "subs_account",
           "subs_dunning": "subs_dunning", "subs_subscription": "subs_subscription"}
_MANY = {"entitlements": "entitlements", "invoices": "invoices", "charges": "charges",
         "schedules": "schedules", "subs_customer": "subs_customer", "subs_invoice": "subs_invoice"}


def read_tables(dsns: Mapping[str, str]) -> tuple[dict[str, frozenset[str]], dict[str, dict[str, list[dict]]]]:
    """(product_config as {plan: features}, {table: {account_id: [rows]}}) from the three stores."""
    plan_features: dict[str, set[str]] = defaultdict(set)
    by_table: dict[str, dict[str, list[dict]]] = {}
    for store, tables in LEGACY_COLUMNS.items():
        with psycopg.connect(dsns[store]) as conn, conn.cursor(row_factory=dict_row) as cur:
            for table, columns in tables.items():
                order = "id" if table == "subs_customer" else ", ".join(columns)
                cur.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}")
                if table == "product_config":
                    for row in cur:
                        plan_features[row["plan"]].add(row["feature"])
                    continue
                grouped: dict[str, list[dict]] = defaultdict(list)
                for row in cur:
                    grouped[row["account_id"]].append(row)
                by_table[table] = grouped
    return {p: frozenset(f) for p, f in plan_features.items()}, by_table


def read_records(dsns: Mapping[str, str], world: StripeWorld) -> list[AccountRecords]:
    """Every account of `cf_prod.accounts`, with its rows and its Stripe side."""
    _, by_table = read_tables(dsns)
    return _records(by_table, world)


def _records(by_table: dict[str, dict[str, list[dict]]], world: StripeWorld) -> list[AccountRecords]:
    owner: dict[str, str] = {}
    for event in world.events:
        obj = event["data"]["object"]
        if obj.get("object") == "customer" and obj.get("metadata", {}).get("account_id"):
            owner[obj["id"]] = obj["metadata"]["account_id"]
    stripe: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for c in world.customers:
        account = c.get("metadata", {}).get("account_id") or owner.get(c["id"])
        if account:
            owner[c["id"]] = account
            stripe[account]["customers"].append(c)
    for name in ("subscriptions", "invoices"):
        for obj in getattr(world, name):
            if obj["customer"] in owner:
                stripe[owner[obj["customer"]]][name].append(obj)

    records = []
    for account_id, (account,) in sorted(by_table["accounts"].items()):
        r = AccountRecords(account_id=account_id, account=account)
        for table, attr in _SINGLE.items():
            if table != "accounts":
                rows = by_table[table].get(account_id, [])
                setattr(r, attr, rows[0] if rows else None)
        for table, attr in _MANY.items():
            setattr(r, attr, list(by_table[table].get(account_id, [])))
        side = stripe.get(account_id, {})
        r.customers = side.get("customers", [])
        r.subscriptions = side.get("subscriptions", [])
        r.stripe_invoices = side.get("invoices", [])
        records.append(r)
    return records


def oracle_corrections(dsns: Mapping[str, str], stripe_dir: Path, now: datetime, *,
                       rules: Thresholds | None = None) -> list[dict[str, Any]]:
    """The corrections the independent oracle finds in the stores as they are now (under `rules`, default v1)."""
    plan_features, by_table = read_tables(dsns)
    world = StripeWorld.load(Path(stripe_dir))
    out: list[dict[str, Any]] = []
    for r in _records(by_table, world):
        out.extend(plan_corrections(true_state(r, plan_features, now, rules=rules), r))
    return out
