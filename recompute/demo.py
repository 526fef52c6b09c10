"""`recompute demo`: the whole loop on the embedded default, from nothing.

Resets the embedded default's databases, builds a synthetic fleet with known drift, serves its
Stripe side from the local stand-in, ingests, plans, applies when `apply` is available, plans
again, and explains one drifting account. It never touches a configured DSN: it rebuilds tables.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from domain.legacy_tables import STORES
from domain.rules import RULES_V1
from ingestion.jobs import run_ingest
from projections.explain import explain, render_text
from projections.plan import plan
from recompute.bootstrap import wire
from recompute.embedded import embedded_dsns
from recompute.settings import Settings
from simulation.oracle.expected_corrections import compare_corrections
from simulation.fleet import build_fleet
from simulation.stripe_standin import StripeStandIn
from simulation.stripe_world import StripeWorld

API_KEY = "sk_test_recompute_demo"


def run_demo(settings: Settings, *, accounts: int, drifting: int, seed: int, say: Callable[[str], None],
             apply_step: Callable[..., object] | None = None) -> None:
    started = time.perf_counter()
    say(f"embedded PostgreSQL in {settings.data_dir / 'pg'} (the demo resets its databases)")
    dsns = embedded_dsns(settings.data_dir, fresh=True)
    # the fleet's "now" is a little before the real now: plan and explain run at the real now,
    # and the fleet keeps every account hours away from any threshold, so both agree
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    with tempfile.TemporaryDirectory(prefix="recompute-demo-") as scratch:
        stripe_dir = Path(scratch) / "stripe"
        manifest = build_fleet({s: dsns[s] for s in STORES}, accounts=accounts,
                               seed=seed, drifting=drifting, now=now, stripe_dir=stripe_dir)
        say(f"1. fleet: {accounts} accounts, {drifting} of them given drift "
            f"({len(manifest.expected_corrections)} corrections injected)")
        with StripeStandIn(StripeWorld.load(stripe_dir), api_key=API_KEY) as stripe:
            say(f"   Stripe stand-in at {stripe.base_url}")
            wiring = wire(replace(settings, dsns=dsns, stripe_api_key=API_KEY, stripe_api_base=stripe.base_url),
                          uses_stripe=True)
            t = time.perf_counter()
            reports = run_ingest(wiring.ingest_jobs("all"))
            say(f"2. ingest: {sum(r.rows_read for r in reports):,} rows and Stripe events read, "
                f"{sum(r.appended for r in reports):,} events appended in {time.perf_counter() - t:.1f}s")

        at = datetime.now(UTC)
        t = time.perf_counter()
        first = plan(dsns, RULES_V1, at)
        say(f"3. plan ({time.perf_counter() - t:.1f}s): {first.accounts_checked} accounts checked, "
            f"{first.accounts_disagreeing} disagreeing, {len(first.corrections)} corrections")
        for line in _by_table(first.corrections):
            say(f"     {line}")
        differences = compare_corrections(manifest.expected_corrections, [c.as_json() for c in first.corrections])
        say("   the plan matches the drift the fleet injected: " +
            ("yes" if not differences else f"NO, {len(differences)} differences, e.g. {differences[0]}"))

        if apply_step is not None:
            apply_step(wiring, at, say)
            run_ingest(wiring.ingest_jobs("cf_prod") + wiring.ingest_jobs("billing_prod")
                       + wiring.ingest_jobs("subs"))
            again = plan(dsns, RULES_V1, datetime.now(UTC))
            say(f"5. ingest + plan again: {again.accounts_disagreeing} accounts disagreeing, "
                f"{len(again.corrections)} corrections")

        account = _interesting(first)
        say(f"\nexplain {account} (now: its state, its own corrections coming back, what apply did):\n")
        say(render_text(explain(dsns, account, RULES_V1, datetime.now(UTC))))
    say(f"\ndemo done in {time.perf_counter() - started:.1f}s; try: recompute explain {account}")


def _by_table(corrections) -> list[str]:
    counts: dict[str, int] = {}
    for c in corrections:
        what = f"{c.table}.{c.column}" if c.column else f"{c.table} ({c.op})"
        counts[what] = counts.get(what, 0) + 1
    return [f"{what:<48} {n:>5}" for what, n in sorted(counts.items())]


def _interesting(result) -> str:
    """A drifting account whose dunning stage is wrong: the most telling one to explain."""
    for c in result.corrections:
        if c.table == "subs.subs_dunning" and c.column == "stage" and c.to != "none":
            return c.account_id
    return result.corrections[0].account_id if result.corrections else "acc_000001"
