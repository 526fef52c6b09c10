#!/usr/bin/env python
"""kill -9 of `recompute apply` at random points, then a rerun: prints each trial and a verdict.

    .venv/bin/python scripts/apply_kill_trials.py [--trials 24] [--timed 6] [--accounts 300] [--drifting 40]

Builds a drifting fleet in scratch databases on the local PostgreSQL (RECOMPUTE_TEST_PG), ingests
it, and measures one uninterrupted apply (its protocol steps). Then each trial runs on a fresh copy
of the four databases: `--trials` of them SIGKILL an apply at a random step of its protocol (after
the intents, mid-transaction in a store, around each commit, ...), `--timed` more SIGKILL the
`recompute apply` command a random 0-30 ms after its intents appear in the audit table (while it
writes the stores, at no point of our choosing). After each kill it checks that every legacy value
changed so far has a pending or applied audit record and an outbox event; then it reruns apply and
checks that every correction was applied exactly once, nothing is left to plan, and no intent is
left pending or event held. Exit code 1 if any trial fails.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulation.harness.apply_fleet import NOW, RECOMPUTE, a_drifting_fleet  # noqa: E402
from simulation.harness.databases import STORES, scratch_databases  # noqa: E402
from simulation.harness.kill_trials import KillTrials  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24, help="kills at a random protocol step")
    parser.add_argument("--timed", type=int, default=6, help="kills of the command after a random delay")
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--drifting", type=int, default=40)
    parser.add_argument("--seed", type=int, default=20261124)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.perf_counter()
    with scratch_databases(*STORES) as dsns:
        fleet = a_drifting_fleet(dsns, Path(tempfile.mkdtemp()), accounts=args.accounts, drifting=args.drifting)
        trials = KillTrials(fleet)
        command_s = _time_the_command(trials)
        print(f"fleet: {args.accounts} accounts, {args.drifting} drifting; {trials.expected} corrections; "
              f"an uninterrupted apply takes {len(trials.steps)} protocol steps, the command {command_s:.2f}s")
        print(f"{'#':>3} {'kill at':<34} {'killed':<6} {'changed':>7} {'unaudited':>9} {'recovered':<26} "
              f"{'applied':>7} {'twice':>5} {'left':>4} {'stuck':>5}  ok")
        failures = 0
        plan = [("step", rng.randint(1, len(trials.steps))) for _ in range(args.trials)]
        plan += [("after", rng.uniform(0, 0.03)) for _ in range(args.timed)]
        for number, (kind, point) in enumerate(plan, 1):
            if kind == "step":
                outcome = trials.run(step=point)
                where = f"step {point} ({trials.steps[point - 1]})"
            else:
                outcome = trials.run(after_s=point)
                where = f"command, intents + {point * 1000:.0f}ms"
            recovered = ", ".join(f"{n} {s}" for s, n in sorted(outcome.recovered.items())) or "-"
            print(f"{number:>3} {where:<34} {str(outcome.killed):<6} {outcome.legacy_changes:>7} "
                  f"{len(outcome.unaudited):>9} {recovered:<26} {outcome.applied_total:>7} "
                  f"{len(outcome.applied_twice):>5} {outcome.left_over:>4} {outcome.pending_or_held:>5}  "
                  f"{'ok' if outcome.ok and outcome.applied_total == trials.expected else 'FAIL'}", flush=True)
            failures += not (outcome.ok and outcome.applied_total == trials.expected)
        killed_mid_write = sum(1 for kind, p in plan if kind == "step" and trials.steps[p - 1].startswith("wrote"))
        print(f"{len(plan)} trials ({killed_mid_write} inside a store's transaction), {failures} failed, "
              f"in {time.perf_counter() - started:.0f}s")
    return 1 if failures else 0


def _time_the_command(trials: KillTrials) -> float:
    with trials._copy() as dsns:
        env = {**trials.fleet.env(), "RECOMPUTE_CF_PROD_DSN": dsns["cf_prod"],
               "RECOMPUTE_BILLING_PROD_DSN": dsns["billing_prod"], "RECOMPUTE_SUBS_DSN": dsns["subs"],
               "RECOMPUTE_EVENTSTORE_DSN": dsns["eventstore"]}
        env.pop("RECOMPUTE_BROKER_URL", None)
        started = time.perf_counter()
        subprocess.run([*RECOMPUTE, "apply", "--force", "--as-of", NOW.isoformat()], env=env, check=True,
                       capture_output=True)
        return time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
