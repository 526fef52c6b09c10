"""Speed of two checkouts of recompute, old and new, alternating on one fleet in one run.

    .venv/bin/python scripts/compare_trees.py OLD_TREE NEW_TREE [--accounts 10000] [--rounds 3] [--workers 2]

Only the CLI is used (the stable interface of cli.md), so any two revisions compare. The fleet is
built once (this checkout's simulation) in scratch databases, its Stripe side served by the stand-in.
Each round runs both trees, in alternating order, each on a fresh event store:
  ingest          `recompute ingest` (every legacy store and Stripe)
  plan full       the first `plan --json` (folds every account's history and keeps the facts)
  plan kept       `plan --json` again on the unchanged log (from the kept facts)
  backfill        `backfill --rules v2 --json --workers N` (a full replay under other rules)
Prints each figure's median over the rounds for both trees and the ratio new/old (below 1: faster).
The plans' corrections are compared between the trees (equal but for each drift's `by` ref, which
names the ingest's snapshot transactions).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from domain.legacy_tables import STORES as LEGACY_STORES  # noqa: E402
from simulation.fleet import build_fleet  # noqa: E402
from simulation.harness.databases import STORES, scratch_databases  # noqa: E402

NOW = datetime(2026, 3, 1, tzinfo=UTC)
API_KEY = "sk_test_compare"
STEPS = ("ingest", "plan full", "plan kept", "backfill")
SPEC_RULES = ROOT.parent / "shared" / "spec" / "rules-v1.md"


def rules_v2(folder: Path) -> Path:
    """rules v1 (the spec's TOML block) suspending at 30 days instead of 21: a rule change for backfill."""
    text = SPEC_RULES.read_text()
    toml = text.split("```toml", 1)[1].split("```", 1)[0]
    toml = toml.replace('version = "v1"', 'version = "v2-compare"')
    path = folder / "rules-v2.toml"
    changed = toml.replace("days_overdue_at_least = 21", "days_overdue_at_least = 30")
    assert changed != toml, "the spec's rules no longer suspend at 21 days"
    path.write_text(changed)
    return path


def fresh_eventstore(admin: str, name: str) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return psycopg.conninfo.make_conninfo(admin, dbname=name)


def run_tree(tree: Path, env: dict[str, str], rules: Path, workers: int) -> tuple[dict[str, float], list]:
    env = {**env, "PYTHONPATH": str(tree)}
    command = [sys.executable, "-c", "from recompute.cli import main; main()"]
    figures: dict[str, float] = {}
    corrections: list = []
    steps = {"ingest": ["ingest"], "plan full": ["plan", "--json", "--as-of", NOW.isoformat()],
             "plan kept": ["plan", "--json", "--as-of", NOW.isoformat()],
             "backfill": ["backfill", "--rules", str(rules), "--json", "--as-of", NOW.isoformat(),
                          "--workers", str(workers)]}
    for step, arguments in steps.items():
        started = time.perf_counter()
        done = subprocess.run([*command, *arguments], env=env, cwd=tree, capture_output=True, text=True)
        figures[step] = time.perf_counter() - started
        if done.returncode != 0:  # cli.md: 1 is a failed run
            raise SystemExit(f"{tree}: {step} exited {done.returncode}: {done.stderr[-2000:]}")
        if step == "plan full":
            corrections = sorted(json.dumps(_stable(c), sort_keys=True) for c in json.loads(done.stdout)["corrections"])
    return figures, corrections


def _stable(correction: dict) -> dict:
    """A correction without its drift's `by` ref, which names the snapshot's transaction ids or the time
    Stripe was listed: different on every ingest."""
    drift = {key: value for key, value in (correction.get("drift") or {}).items() if key != "by"}
    return {**correction, "drift": drift}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--drifting", type=int, default=691)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    trees = {"old": args.old.resolve(), "new": args.new.resolve()}
    with scratch_databases(*STORES) as dsns, tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        started = time.perf_counter()
        build_fleet({s: dsns[s] for s in LEGACY_STORES}, accounts=args.accounts, seed=7, drifting=args.drifting,
                    now=NOW, stripe_dir=folder / "stripe")
        print(f"fleet: {args.accounts} accounts ({time.perf_counter() - started:.0f}s)", flush=True)
        rules = rules_v2(folder)
        standin = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "stripe_standin.py"), "--world",
                                    str(folder / "stripe"), "--api-key", API_KEY, "--port", "0"],
                                   stdout=subprocess.PIPE, text=True)
        eventstore_name = psycopg.conninfo.conninfo_to_dict(dsns["eventstore"])["dbname"]
        results: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
        answers: dict[str, list] = {}
        try:
            env = {**os.environ, "RECOMPUTE_CF_PROD_DSN": dsns["cf_prod"],
                   "RECOMPUTE_BILLING_PROD_DSN": dsns["billing_prod"], "RECOMPUTE_SUBS_DSN": dsns["subs"],
                   "STRIPE_API_KEY": API_KEY, "RECOMPUTE_STRIPE_API_BASE": standin.stdout.readline().strip()}
            admin = psycopg.conninfo.make_conninfo(dsns["eventstore"], dbname="postgres")
            for round_ in range(args.rounds):
                order = ("old", "new") if round_ % 2 == 0 else ("new", "old")
                for which in order:
                    env["RECOMPUTE_EVENTSTORE_DSN"] = fresh_eventstore(admin, eventstore_name)
                    figures, answers[which] = run_tree(trees[which], env, rules, args.workers)
                    results[which].append(figures)
                    print(f"round {round_ + 1} {which}: " + ", ".join(f"{s} {figures[s]:.2f}s" for s in STEPS),
                          flush=True)
        finally:
            standin.terminate()
    print(f"\n{'step':<10} {'old (median)':>13} {'new (median)':>13} {'new/old':>8}")
    for step in STEPS:
        old = statistics.median(r[step] for r in results["old"])
        new = statistics.median(r[step] for r in results["new"])
        print(f"{step:<10} {old:>12.2f}s {new:>12.2f}s {new / old:>8.2f}")
    same = answers["old"] == answers["new"]
    print(f"plan's corrections: {'the same' if same else 'DIFFERENT'} ({len(answers['new'])} corrections)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
