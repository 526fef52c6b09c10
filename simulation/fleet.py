"""Build a synthetic fleet: three legacy databases, a Stripe world on disk, and a manifest of the
exact corrections the projector must find.

    manifest = build_fleet({"cf_prod": dsn1, "billing_prod": dsn2, "subs": dsn3},
                           accounts=10_000, seed=7, drifting=691, now=NOW, stripe_dir=Path("stripe"))

Deterministic for (accounts, seed, drifting, now): each account draws from its own seeded random
streams, so account 42's history is the same whatever the fleet's size (which accounts drift, and
how, depends on the size). `generate_chunks` is the same fleet in memory, a chunk at a time,
without databases.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from time import perf_counter
from typing import Any

import psycopg

from simulation.drift import choose_drift, eligibility
from simulation.gc_pause import collector_paused
from simulation.legacy_render import assign_customer_ids, authoritative_rows, fill_consistent_rows
from simulation.legacy_schema import LEGACY_COLUMNS, create_legacy_schema
from simulation.manifest import FleetManifest
from simulation.oracle.expected_corrections import compare_corrections, correction_kind, plan_corrections
from simulation.oracle.expected_state import TrueState, true_state
from simulation.records import PLAN_FEATURES, AccountRecords
from simulation.story import plan_account
from simulation.stripe_render import render_stripe
from simulation.stripe_world import StripeWorldWriter

__all__ = ["FleetManifest", "GeneratedFleet", "build_fleet", "compare_corrections", "generate_chunks"]
STORES = ("cf_prod", "billing_prod", "subs")
MARGIN = timedelta(hours=2)
CHUNK = 2_500  # accounts generated and loaded at a time (about 80 MB of them)


@dataclass
class GeneratedFleet:
    """A fleet in memory (or a chunk of one): every account's rows and Stripe side, after drift."""

    records: list[AccountRecords]
    drift: dict[str, list[str]]  # account_id -> drift kinds injected
    expected_corrections: list[dict[str, Any]]


def build_fleet(dsns: Mapping[str, str], *, accounts: int, seed: int, drifting: int, now: datetime,
                stripe_dir: Path, log: Callable[[str], None] | None = None, chunk: int = CHUNK) -> FleetManifest:
    """Recreate the legacy tables in the three databases of `dsns` and fill them, write the Stripe
    world into `stripe_dir`, and return the manifest. Built `chunk` accounts at a time
    (`generate_chunks`): its memory does not grow with the fleet's size."""
    if missing := [s for s in STORES if s not in dsns]:
        raise ValueError(f"dsns: missing {', '.join(missing)} (need {', '.join(STORES)})")
    say = log or (lambda _msg: None)
    started = perf_counter()
    drift: dict[str, list[str]] = {}
    expected: list[dict[str, Any]] = []
    with collector_paused(), ExitStack() as stack, ThreadPoolExecutor(max_workers=len(STORES)) as pool:
        conns = {s: stack.enter_context(psycopg.connect(dsns[s])) for s in STORES}
        counts = {f"{s}.{table}": 0 for s in STORES for table in LEGACY_COLUMNS[s]}
        for s in STORES:
            create_legacy_schema(conns[s], s)
        _copy(conns["cf_prod"], "cf_prod", {"product_config": _product_config()}, counts)
        with StripeWorldWriter(Path(stripe_dir), now=int(now.timestamp())) as world:
            for part in generate_chunks(accounts=accounts, seed=seed, drifting=drifting, now=now, chunk=chunk):
                futures = [pool.submit(_copy, conns[s], s, _rows(s, part.records), counts) for s in STORES]
                world.add(events=(e for r in part.records for e in r.events),
                          customers=(c for r in part.records for c in r.customers),
                          subscriptions=(x for r in part.records for x in r.subscriptions),
                          invoices=(i for r in part.records for i in r.stripe_invoices))
                for f in futures:
                    f.result()
                drift.update(part.drift)
                expected.extend(part.expected_corrections)
                say(f"  {part.records[-1].account_id}: {perf_counter() - started:.1f}s")
                del part  # before the next chunk is made, not after: one chunk at a time
            say(f"generated and loaded {accounts} accounts, {len(drift)} drifting "
                f"({len(expected)} corrections) in {perf_counter() - started:.1f}s")
        for name, n in world.counts.items():
            counts[f"stripe.{name}"] = n
        for name, n in counts.items():
            say(f"  {name}: {n} rows")
        for s in STORES:
            with conns[s].cursor() as cur:
                if s == "subs":
                    cur.execute("SELECT setval(pg_get_serial_sequence('subs_customer', 'id'), "
                                "coalesce(max(id), 0) + 1, false) FROM subs_customer")
                cur.execute("ANALYZE")
            conns[s].commit()
    say(f"fleet built in {perf_counter() - started:.1f}s")
    return FleetManifest(now=now, accounts=accounts, seed=seed, drifting_accounts=sorted(drift),
                         expected_corrections=expected, drift_kinds=drift, counts=counts)


def generate_chunks(*, accounts: int, seed: int, drifting: int, now: datetime,
                    chunk: int = CHUNK) -> Iterator[GeneratedFleet]:
    """The fleet `chunk` accounts at a time, in account order, checked: non-drifting accounts agree
    with their true state, drifting ones produce a correction for every kind injected, and drift
    left every authority alone.

    Two passes, so that no more than a chunk is ever held: the first generates every account only
    to note which drift kinds it can carry (`eligibility`) and chooses the drifting ones from that
    (`choose_drift`); the second generates each chunk again (an account is seeded by its number,
    so it comes out the same), injects its chosen accounts' drift in account order (continuing the
    choice's random stream) and numbers its subs_customer rows after the previous chunk's. The
    chunks joined are the fleet a single pass over all accounts would make.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now={now.isoformat()}: must be timezone-aware")
    if not 0 <= drifting <= accounts:
        raise ValueError(f"drifting={drifting}: must be between 0 and accounts={accounts}")
    with collector_paused():
        masks = [eligibility(*_account(number, seed, now, checked=False)) for number in range(1, accounts + 1)]
    choice = choose_drift(masks, drifting=drifting, seed=seed)
    del masks
    next_id = 1
    for first in range(1, accounts + 1, chunk):
        with collector_paused():
            records: list[AccountRecords] = []
            truths: list[TrueState] = []
            drift: dict[str, list[str]] = {}
            for number in range(first, min(first + chunk, accounts + 1)):
                r, truth = _account(number, seed, now)
                if kinds := choice.inject(number - 1, r, truth, now):
                    drift[r.account_id] = kinds
                records.append(r)
                truths.append(truth)
            next_id = assign_customer_ids(records, first_id=next_id)
            expected = _expected_corrections(records, truths, drift, now)
        yield GeneratedFleet(records, drift, expected)
        del records, truths, drift, expected


def _account(number: int, seed: int, now: datetime, *, checked: bool = True) -> tuple[AccountRecords, TrueState]:
    """Account `number` before drift, and its true state: the same whatever the fleet. `checked`: raise
    when its state changes near now (`_check_unambiguous`; the first pass leaves that to the second)."""
    p = plan_account(number, seed, int(now.timestamp()))
    stripe = render_stripe(p, seed)
    rng = random.Random(f"recompute-fleet-legacy:{seed}:{number}")
    r = authoritative_rows(p, stripe, rng)
    truth = true_state(r, PLAN_FEATURES, now)
    if checked:
        _check_unambiguous(r, truth, now)
    fill_consistent_rows(r, truth, p, rng)
    return r, truth


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


def _product_config() -> Iterator[dict[str, Any]]:
    return ({"plan": p, "feature": f} for p, fs in PLAN_FEATURES.items() for f in sorted(fs))


def _rows(store: str, records: list[AccountRecords]) -> dict[str, Iterable[dict[str, Any]]]:
    """A chunk's rows per table of `store` (product_config is the fleet's, loaded once)."""
    if store == "cf_prod":
        return {
            "accounts": (r.account for r in records),
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


def _copy(conn: psycopg.Connection, store: str, tables: Mapping[str, Iterable[dict[str, Any]]],
          counts: dict[str, int]) -> None:
    """COPY rows into `store`'s tables (in the connection's open transaction), adding to `counts`."""
    with conn.cursor() as cur:
        for table, rows in tables.items():
            columns = LEGACY_COLUMNS[store][table]
            n = 0
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([row[c] for c in columns])
                    n += 1
            counts[f"{store}.{table}"] += n
