"""Build a synthetic fleet: three legacy databases, a Stripe world on disk, and a manifest of the
exact corrections the projector must find.

    manifest = build_fleet({"cf_prod": dsn1, "billing_prod": dsn2, "subs": dsn3},
                           accounts=10_000, seed=7, drifting=691, now=NOW, stripe_dir=Path("stripe"))

Deterministic for (accounts, seed, drifting, now): each account draws from its own seeded random
streams, so account 42's history is the same whatever the fleet's size (which accounts drift, and
how, depends on the size). `generate_fleet` is the same fleet in memory, without databases.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from time import perf_counter
from typing import Any

import psycopg

from simulation.drift import inject_drift
from simulation.gc_pause import collector_paused
from simulation.legacy_render import assign_customer_ids, authoritative_rows, fill_consistent_rows
from simulation.legacy_schema import LEGACY_COLUMNS, create_legacy_schema
from simulation.manifest import FleetManifest
from simulation.oracle.expected_corrections import compare_corrections, correction_kind, plan_corrections
from simulation.oracle.expected_state import TrueState, true_state
from simulation.records import PLAN_FEATURES, AccountRecords
from simulation.story import plan_account
from simulation.stripe_render import render_stripe
from simulation.stripe_world import StripeWorld

__all__ = ["FleetManifest", "GeneratedFleet", "build_fleet", "compare_corrections", "generate_fleet"]
STORES = ("cf_prod", "billing_prod", "subs")
MARGIN = timedelta(hours=2)


@dataclass
class GeneratedFleet:
    """A fleet in memory: every account's rows and Stripe side, after drift."""

    records: list[AccountRecords]
    drift: dict[str, list[str]]  # account_id -> drift kinds injected
    expected_corrections: list[dict[str, Any]]


def build_fleet(dsns: Mapping[str, str], *, accounts: int, seed: int, drifting: int, now: datetime,
                stripe_dir: Path, log: Callable[[str], None] | None = None) -> FleetManifest:
    """Recreate the legacy tables in the three databases of `dsns` and fill them, write the Stripe
    world into `stripe_dir`, and return the manifest."""
    if missing := [s for s in STORES if s not in dsns]:
        raise ValueError(f"dsns: missing {', '.join(missing)} (need {', '.join(STORES)})")
    say = log or (lambda _msg: None)
    started = perf_counter()
    with collector_paused():
        fleet = generate_fleet(accounts=accounts, seed=seed, drifting=drifting, now=now)
        say(f"generated {accounts} accounts, {len(fleet.drift)} drifting "
            f"({len(fleet.expected_corrections)} corrections) in {perf_counter() - started:.1f}s")

        t = perf_counter()
        with ThreadPoolExecutor(max_workers=len(STORES)) as pool:
            futures = {s: pool.submit(_load_store, dsns[s], s, fleet.records) for s in STORES}
            counts = {k: v for s in STORES for k, v in futures[s].result().items()}
        for name, n in counts.items():
            say(f"  {name}: {n} rows")
        say(f"loaded the legacy stores in {perf_counter() - t:.1f}s")

        t = perf_counter()
        world = stripe_world(fleet.records, now)
        world.save(Path(stripe_dir))
        for name in ("events", "customers", "subscriptions", "invoices"):
            counts[f"stripe.{name}"] = len(getattr(world, name))
        say(f"wrote {len(world.events)} Stripe events, {len(world.customers)} customers, "
            f"{len(world.subscriptions)} subscriptions, {len(world.invoices)} invoices "
            f"in {perf_counter() - t:.1f}s")
    say(f"fleet built in {perf_counter() - started:.1f}s")
    return FleetManifest(now=now, accounts=accounts, seed=seed, drifting_accounts=sorted(fleet.drift),
                         expected_corrections=fleet.expected_corrections, drift_kinds=fleet.drift,
                         counts=counts)


def generate_fleet(*, accounts: int, seed: int, drifting: int, now: datetime) -> GeneratedFleet:
    """The fleet in memory, checked: non-drifting accounts agree with their true state, drifting
    ones produce a correction for every kind injected, and drift left every authority alone."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now={now.isoformat()}: must be timezone-aware")
    if not 0 <= drifting <= accounts:
        raise ValueError(f"drifting={drifting}: must be between 0 and accounts={accounts}")
    now_ts = int(now.timestamp())
    records: list[AccountRecords] = []
    truths: list[TrueState] = []
    with collector_paused():
        for number in range(1, accounts + 1):
            p = plan_account(number, seed, now_ts)
            stripe = render_stripe(p, seed)
            rng = random.Random(f"recompute-fleet-legacy:{seed}:{number}")
            r = authoritative_rows(p, stripe, rng)
            truth = true_state(r, PLAN_FEATURES, now)
            _check_unambiguous(r, truth, now)
            fill_consistent_rows(r, truth, p, rng)
            records.append(r)
            truths.append(truth)
        drift = inject_drift(records, truths, drifting=drifting, seed=seed, now=now)
        assign_customer_ids(records)
        expected = _expected_corrections(records, truths, drift, now)
    return GeneratedFleet(records, drift, expected)


def stripe_world(records: list[AccountRecords], now: datetime) -> StripeWorld:
    world = StripeWorld(now=int(now.timestamp()))
    for r in records:
        world.customers.extend(r.customers)
        world.subscriptions.extend(r.subscriptions)
        world.invoices.extend(r.stripe_invoices)
        world.events.extend(r.events)
    world.events.sort(key=lambda e: (e["created"], e["id"]))
    return world


def _check_unambiguous(r: AccountRecords, truth: TrueState, now: datetime) -> None:
    """No due date or threshold crossing within MARGIN of now: a run a little later agrees."""
    s = truth.standing
    if s.stage == "none" and s.next_action_at is None:
        return
    for when in (now - MARGIN, now + MARGIN):
        if true_state(r, PLAN_FEATURES, when).standing != s:
            raise RuntimeError(f"{r.account_id}: its state changes within {MARGIN} of {now.isoformat()}")


def _expected_corrections(records: list[AccountRecords], truths: list[TrueState],
                          drift: dict[str, list[str]], now: datetime) -> list[dict[str, Any]]:
    expected = []
    for r, truth in zip(records, truths, strict=True):
        if r.account_id in drift and true_state(r, PLAN_FEATURES, now) != truth:
            raise RuntimeError(f"{r.account_id}: drift changed an authority")
        found = plan_corrections(truth, r)
        kinds = {correction_kind(c) for c in found}
        if r.account_id not in drift and found:
            raise RuntimeError(f"{r.account_id}: not drifted, yet disagrees: {found}")
        if missing := [k for k in drift.get(r.account_id, ()) if k not in kinds]:
            raise RuntimeError(f"{r.account_id}: drift {missing} produced no such correction: {found}")
        expected.extend(found)
    return expected


def _rows(store: str, records: list[AccountRecords]) -> dict[str, Iterable[dict[str, Any]]]:
    if store == "cf_prod":
        return {
            "accounts": (r.account for r in records),
            "product_config": ({"plan": p, "feature": f} for p, fs in PLAN_FEATURES.items() for f in sorted(fs)),
            "entitlements": (e for r in records for e in r.entitlements),
        }
    if store == "billing_prod":
        return {
            "invoices": (i for r in records for i in r.invoices),
            "charges": (c for r in records for c in r.charges),
            "dunning": (r.dunning for r in records if r.dunning is not None),
            "schedules": (s for r in records for s in r.schedules),
        }
    return {
        "subs_account": (r.subs_account for r in records),
        "subs_customer": (c for r in records for c in r.subs_customer),
        "subs_dunning": (r.subs_dunning for r in records if r.subs_dunning is not None),
        "subs_subscription": (r.subs_subscription for r in records if r.subs_subscription is not None),
        "subs_invoice": (i for r in records for i in r.subs_invoice),
    }


def _load_store(dsn: str, store: str, records: list[AccountRecords]) -> dict[str, int]:
    """Recreate `store`'s tables and COPY the fleet's rows into them."""
    counts = {}
    with psycopg.connect(dsn) as conn:
        create_legacy_schema(conn, store)
        with conn.cursor() as cur:
            for table, rows in _rows(store, records).items():
                columns = LEGACY_COLUMNS[store][table]
                n = 0
                with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row([row[c] for c in columns])
                        n += 1
                counts[f"{store}.{table}"] = n
            if store == "subs":
                cur.execute("SELECT setval(pg_get_serial_sequence('subs_customer', 'id'), "
                            "coalesce(max(id), 0) + 1, false) FROM subs_customer")
            cur.execute("ANALYZE")
        conn.commit()
    return counts
