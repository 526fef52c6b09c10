"""`recompute demo`: the whole loop on the embedded default, from nothing, told in one screen.

Resets the embedded default's databases, builds a synthetic fleet with known drift, serves its
Stripe side from the local stand-in, ingests, plans (the drift: counts by column, three examples),
explains an account whose dunning stage is wrong, applies (what it wrote and announced), explains
the account again, plans again (nothing left), and writes the HTML report of the drift it found.
`verbose` adds everything else: each step's details and both explanations in full. It never
touches a configured DSN: it rebuilds tables.
"""

from __future__ import annotations

import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from domain.diff import Correction
from domain.legacy_tables import STORES
from domain.rules import RULES_V1
from ingestion.jobs import run_ingest
from projections.explain import explain, render_text
from projections.explain_text import render_brief
from projections.plan import PlanResult, plan
from projections.report.aggregate import cell_of
from projections.report.data import History, read_history
from recompute.bootstrap import wire
from recompute.embedded import embedded_dsns
from recompute.settings import Settings
from simulation.fleet import build_fleet
from simulation.oracle.expected_corrections import compare_corrections
from simulation.stripe_standin import StripeStandIn
from simulation.stripe_world import StripeWorld

API_KEY = "sk_test_recompute_demo"
STAGE_FIELDS = ("stage", "days_overdue", "failed_attempts", "delinquent", "next_action_at")
ApplyStep = Callable[..., tuple[Any, str]]  # (app, at) -> (ApplyResult, a line on the events' relay)


def run_demo(settings: Settings, *, accounts: int, drifting: int, seed: int, say: Callable[[str], None],
             apply_step: ApplyStep | None = None, verbose: bool = False) -> None:
    started = time.perf_counter()
    more = say if verbose else (lambda _: None)
    say(f"recompute demo: the embedded PostgreSQL, its databases reset, in {settings.data_dir / 'pg'}")
    dsns = embedded_dsns(settings.data_dir, fresh=True)
    # the fleet's "now" is a little before the real now: plan and explain run at the real now,
    # and the fleet keeps every account hours away from any threshold, so both agree
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    with tempfile.TemporaryDirectory(prefix="recompute-demo-") as scratch:
        stripe_dir = Path(scratch) / "stripe"
        manifest = build_fleet({s: dsns[s] for s in STORES}, accounts=accounts,
                               seed=seed, drifting=drifting, now=now, stripe_dir=stripe_dir)
        say(f"\nthe fleet    {accounts:,} accounts in cf_prod, billing_prod and subs, their Stripe side served by a "
            f"local stand-in;\n             {drifting} of them given drift ({len(manifest.expected_corrections)} "
            "corrections injected)")
        with StripeStandIn(StripeWorld.load(stripe_dir), api_key=API_KEY) as stripe:
            more(f"             Stripe stand-in at {stripe.base_url}")
            app = wire(replace(settings, dsns=dsns, stripe_api_key=API_KEY, stripe_api_base=stripe.base_url),
                          uses_stripe=True)
            t = time.perf_counter()
            reports = run_ingest(app.ingest_jobs("all"))
            say(f"ingest       {sum(r.rows_read for r in reports):,} rows and Stripe events read, "
                f"{sum(r.appended for r in reports):,} events appended to the account log "
                f"({time.perf_counter() - t:.1f}s)")

        at = datetime.now(UTC)
        t = time.perf_counter()
        first = plan(app.stores, RULES_V1, at)
        differences = compare_corrections(manifest.expected_corrections, [c.as_json() for c in first.corrections])
        say(f"\nplan         {first.accounts_checked:,} accounts checked, {first.accounts_disagreeing} disagree: "
            f"{len(first.corrections)} corrections ({time.perf_counter() - t:.1f}s); matches the drift injected: "
            + ("yes" if not differences else f"NO, {len(differences)} differences, e.g. {differences[0]}"))
        for line in drift_table(first.corrections):
            say(f"  {line}")
        say("  for example")
        for c in examples(first.corrections):
            say(f"    {c.account_id}  {c.table}.{c.column}  {c.from_!r} -> {c.to!r}")
        for line in _by_table(first.corrections):
            more(f"     {line}")

        account = _interesting(first)
        before = explain(app.stores, account, RULES_V1, at)
        say(f"\nexplain {account}, before apply: its dunning stage is wrong")
        for line in render_brief(before, STAGE_FIELDS):
            say(line)
        more("\n" + render_text(before) + "\n")

        report_path = settings.data_dir / "demo-report.html"
        from recompute.cli.report import write_report

        size, gathering, rendering = write_report(app.stores, RULES_V1, at, report_path)

        if apply_step is not None:
            result, relay = apply_step(app, at)
            history = read_history(app.stores)
            say(f"\napply        {result.count('applied')} corrections written in {result.accounts_chosen} accounts, "
                f"each with its audit record; {result.count('stale')} stale")
            for line in textwrap.wrap(f"announced {announced(history)}", 118, initial_indent=" " * 13,
                                      subsequent_indent=" " * 13):
                say(line)
            say(f"             {relay}")
            run_ingest(app.ingest_jobs("cf_prod") + app.ingest_jobs("billing_prod")
                       + app.ingest_jobs("subs"))
            after = explain(app.stores, account, RULES_V1, datetime.now(UTC))
            say(f"\nexplain {account}, after apply and ingest: {len(after.corrections)} corrections left")
            for line in render_brief(after, STAGE_FIELDS[:1]):
                say(line)
            more("\n" + render_text(after) + "\n")
            again = plan(app.stores, RULES_V1, datetime.now(UTC))
            say(f"\nplan again   {again.accounts_disagreeing} accounts disagree, {len(again.corrections)} corrections")

    say(f"\nreport       the drift plan found, as a page for a browser ({size / 1024:,.0f} KiB): {report_path}")
    more(f"             gathered in {gathering:.1f}s, rendered in {rendering:.2f}s")
    say(f"done in {time.perf_counter() - started:.1f}s; more: recompute demo --verbose, recompute explain {account}")


def drift_table(corrections: Sequence[Correction]) -> list[str]:
    """Corrections by table, then by column (an insert or delete as "(insert)" / "(delete)"), one line a table."""
    by_cell = Counter(cell_of(c) for c in corrections)
    tables: dict[str, list[str]] = {}
    for (table, column), n in sorted(by_cell.items()):
        tables.setdefault(table, []).append(f"{column} {n}")
    width = max((len(t) for t in tables), default=0)
    return [f"{'table':<{width}}  corrections by column"] + [f"{t:<{width}}  {' · '.join(cells)}"
                                                              for t, cells in tables.items()]


def examples(corrections: Sequence[Correction], count: int = 3) -> list[Correction]:
    """A few updates from -> to, each of another table: a stage first, when there is one."""
    updates = sorted((c for c in corrections if c.op == "update"),
                     key=lambda c: (c.column != "stage", c.table, c.account_id))
    chosen: list[Correction] = []
    for c in updates:
        if all(c.table != other.table for other in chosen):
            chosen.append(c)
    return chosen[:count]


def announced(history: History) -> str:
    """The domain events the outbox holds, by type, from the report's reading of it."""
    types = Counter()
    for row in history.outbox:
        if row["status"] != "void":
            types[row["type"]] += row["n"]
    if not types:
        return "no domain events"
    return f"{sum(types.values())} domain events: " + ", ".join(f"{t}={n}" for t, n in sorted(types.items()))


def _by_table(corrections) -> list[str]:
    counts: dict[str, int] = {}
    for c in corrections:
        what = f"{c.table}.{c.column}" if c.column else f"{c.table} ({c.op})"
        counts[what] = counts.get(what, 0) + 1
    return [f"{what:<48} {n:>5}" for what, n in sorted(counts.items())]


def _interesting(result: PlanResult) -> str:
    """A drifting account whose dunning stage is wrong, best one in dunning (not "none"): the most
    telling one to explain."""
    stage = [c for c in result.corrections if c.column == "stage" and c.table.endswith("dunning")]
    for c in sorted(stage, key=lambda c: (c.to == "none", c.table != "subs.subs_dunning", c.account_id)):
        return c.account_id
    return result.corrections[0].account_id if result.corrections else "acc_000001"
