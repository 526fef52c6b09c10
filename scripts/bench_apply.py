#!/usr/bin/env python
"""Benchmark: `apply` on the 10,000-account fleet with 691 drifting accounts, and ingest -> apply end to end.

    .venv/bin/python scripts/bench_apply.py [--accounts 10000] [--drifting 691] [--reuse]

Builds the fleet in databases `bench_apply_<accounts>_*` on the local PostgreSQL (RECOMPUTE_TEST_PG,
default 127.0.0.1:5432; --reuse keeps a fleet built by an earlier run), serves its Stripe world
from the stand-in in a separate process, then runs the command line as an operator would:

    recompute ingest                   (timed)
    recompute apply --as-of NOW --json (timed; the default --max-share allows 691/10000)
    recompute ingest; recompute plan   (must find nothing: no feedback loop)

and, on a copy of the ingested databases made before that apply, the same `apply` in-process with
a timer on each step of its protocol. It prints corrections applied per second (over the whole
apply command, and over its legacy-write phase alone), the events published, and ingest -> apply.
RECOMPUTE_BROKER_URL (default amqp://guest:guest@127.0.0.1:5672//) receives the events.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from domain.legacy_tables import STORES as LEGACY_STORES  # noqa: E402
from domain.rules import RULES_V1  # noqa: E402
from eventlog.stores import Stores  # noqa: E402
from projections.apply.protocol import ApplyOptions, apply  # noqa: E402
from simulation.fleet import build_fleet  # noqa: E402

SERVER = os.environ.get("RECOMPUTE_TEST_PG", "host=127.0.0.1 port=5432 user=postgres")
BROKER = os.environ.get("RECOMPUTE_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
NOW = datetime(2026, 3, 1, tzinfo=UTC)
API_KEY = "sk_test_bench"
STORES = (*LEGACY_STORES, "eventstore")


def admin(statement: sql.Composable) -> None:
    with psycopg.connect(f"{SERVER} dbname=postgres", autocommit=True) as conn:
        conn.execute(statement)


def recreate(database: str, *, template: str | None = None) -> str:
    admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
    admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)) if template is None else
          sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(database), sql.Identifier(template)))
    return f"{SERVER} dbname={database}"


def exists(database: str) -> bool:
    with psycopg.connect(f"{SERVER} dbname=postgres") as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is not None


def recompute(env: dict[str, str], *args: str) -> tuple[str, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", "from recompute.cli import main; main()", *args], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"recompute {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--drifting", type=int, default=691)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--reuse", action="store_true", help="keep the legacy stores built by an earlier run")
    args = parser.parse_args()

    prefix = f"bench_apply_{args.accounts}"
    world = Path(f"/tmp/{prefix}_stripe")
    reuse = args.reuse and (world / "meta.json").exists() and exists(f"{prefix}_pristine_cf_prod")
    if not reuse:
        pristine = {s: recreate(f"{prefix}_pristine_{s}") for s in LEGACY_STORES}
        started = time.perf_counter()
        build_fleet(pristine, accounts=args.accounts, seed=args.seed, drifting=args.drifting, now=NOW,
                    stripe_dir=world)
        print(f"fleet: {args.accounts} accounts, {args.drifting} drifting, built in {time.perf_counter() - started:.1f}s")
    dsns = {s: recreate(f"{prefix}_{s}", template=f"{prefix}_pristine_{s}") for s in LEGACY_STORES}
    dsns["eventstore"] = recreate(f"{prefix}_eventstore")

    standin = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "stripe_standin.py"), "--world", str(world),
                                "--api-key", API_KEY, "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RECOMPUTE_BROKER_URL": BROKER, "STRIPE_API_KEY": API_KEY,
               "RECOMPUTE_STRIPE_API_BASE": standin.stdout.readline().strip(),
               "RECOMPUTE_CF_PROD_DSN": dsns["cf_prod"], "RECOMPUTE_BILLING_PROD_DSN": dsns["billing_prod"],
               "RECOMPUTE_SUBS_DSN": dsns["subs"], "RECOMPUTE_EVENTSTORE_DSN": dsns["eventstore"]}
        _, ingest_s = recompute(env, "ingest")
        copies = {s: recreate(f"{prefix}_copy_{s}", template=f"{prefix}_{s}") for s in STORES}
        out, apply_s = recompute(env, "apply", "--as-of", NOW.isoformat(), "--json")
        result = orjson.loads(out)
        _, reingest_s = recompute(env, "ingest")
        replan = orjson.loads(recompute(env, "plan", "--as-of", NOW.isoformat(), "--json")[0])
    finally:
        standin.terminate()

    marks: list[tuple[str, float]] = []
    started = time.perf_counter()
    inproc = apply(Stores.from_dsns(copies), RULES_V1, NOW, ApplyOptions(),
                   on_step=lambda step: marks.append((step, time.perf_counter() - started)))
    total_s = time.perf_counter() - started
    spent: dict[str, float] = {}
    previous = 0.0
    for step, t in marks:  # the time up to each step, summed over batches; per-statement steps by store
        kind = step.replace("wrote:", "writing ").replace("committing:", "writing ")
        spent[kind] = spent.get(kind, 0.0) + t - previous
        previous = t
    writes_s = sum(v for k, v in spent.items() if k.startswith(("writing", "committed")))

    applied = result["applied"]
    print(f"accounts checked / disagreeing / changed   {result['accounts_checked']:>7,} / "
          f"{result['accounts_disagreeing']:,} / {result['accounts_changed']:,}")
    print(f"corrections applied                        {applied:>7,}  (stale {result['stale']})")
    print(f"domain events                              {result['events']['ready']:>7,}  "
          f"(published {result['events']['published']:,}, waiting {result['events']['waiting']})")
    print(f"recompute ingest                           {ingest_s:>7.1f}s")
    print(f"recompute apply (command, incl. relay)     {apply_s:>7.1f}s  -> {applied / apply_s:,.0f} corrections/s")
    print(f"ingest -> apply, end to end                {ingest_s + apply_s:>7.1f}s")
    print(f"after apply: ingest {reingest_s:.1f}s, then plan finds {len(replan['corrections'])} corrections")
    print(f"in-process apply on a copy                 {total_s:>7.1f}s  ({inproc.count('applied'):,} applied)")
    for kind, seconds in spent.items():
        print(f"    until {kind:<32} {seconds:>7.2f}s")
    print(f"legacy-write phase (3 store transactions)  {writes_s:>7.2f}s  -> "
          f"{inproc.count('applied') / writes_s:,.0f} corrections/s")
    for s in STORES:
        admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(f"{prefix}_copy_{s}")))


if __name__ == "__main__":
    main()
