#!/usr/bin/env python
"""kill -9 of `recompute backfill` and of `backfill --apply` at random points, then a rerun.

    .venv/bin/python scripts/backfill_kill_trials.py [--trials 10] [--after-switch 4] [--accounts 300]

Builds a drifting fleet in scratch databases (RECOMPUTE_TEST_PG), ingests it, and runs both commands
once uninterrupted (rules v1 with suspension at 30 days and bad debt at 45: simulation's
BackfillTrials). Each trial, on a fresh copy of the four databases, SIGKILLs the command a random
0..1.1x of its uninterrupted time after it started (`--trials` of each command), and `--after-switch`
more SIGKILL `backfill --apply` a random 0..--switch-window seconds after its generation became active
(while it recovers and plans), and `--mid-write` more 0-30 ms after its first intents are recorded
(while it writes the stores). Then: the active generation is the old or the new fully built one, never a mix; every
legacy value changed so far is audited; the same command completes with the uninterrupted run's
report; with --apply the new rules are active, nothing is left to plan and no correction was applied
twice. Exit 1 if a trial fails.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulation.harness.apply_fleet import a_drifting_fleet  # noqa: E402
from simulation.harness.backfill_trials import BackfillTrials  # noqa: E402
from simulation.harness.databases import STORES, scratch_databases  # noqa: E402
from tests.e2e.test_backfill_fleet import RULES_V2  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="kills of each command at a random time")
    parser.add_argument("--after-switch", type=int, default=6, help="kills of --apply just after its switch")
    parser.add_argument("--switch-window", type=float, default=1.5,
                        help="those kills come a random 0..S seconds after the switch")
    parser.add_argument("--mid-write", type=int, default=6,
                        help="kills of --apply 0-30 ms after its first intents are recorded (writing the stores)")
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--drifting", type=int, default=40)
    parser.add_argument("--seed", type=int, default=20261202)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.perf_counter()
    rules_file = Path(tempfile.mkdtemp()) / "v2.toml"
    rules_file.write_text(RULES_V2)
    with scratch_databases(*STORES) as dsns:
        fleet = a_drifting_fleet(dsns, Path(tempfile.mkdtemp()), accounts=args.accounts, drifting=args.drifting)
        trials = BackfillTrials(fleet, rules_file)
        print(f"fleet: {args.accounts} accounts, {args.drifting} drifting; uninterrupted: backfill "
              f"{trials.seconds[False]:.2f}s, backfill --apply {trials.seconds[True]:.2f}s; "
              f"{trials.reference[True]['against_legacy']['accounts_disagreeing']} accounts to correct")
        print(f"{'#':>3} {'command':<16} {'kill at':<22} {'killed':<6} {'active after kill':<22} {'changed':>7} "
              f"{'unaudited':>9} {'rerun same':<10} {'active':<6} {'twice':>5} {'left':>4}  ok")
        plan = [(False, "after", rng.uniform(0, 1.1) * trials.seconds[False]) for _ in range(args.trials)]
        plan += [(True, "after", rng.uniform(0, 1.1) * trials.seconds[True]) for _ in range(args.trials)]
        plan += [(True, "switch", rng.uniform(0, args.switch_window)) for _ in range(args.after_switch)]
        plan += [(True, "intents", rng.uniform(0, 0.03)) for _ in range(args.mid_write)]
        failures, counts = 0, {"old": 0, "new": 0}
        for number, (apply, kind, point) in enumerate(plan, 1):
            outcome = trials.run(apply=apply, after_s=point) if kind == "after" else \
                trials.run(apply=apply, after_switch_s=point) if kind == "switch" else \
                trials.run(apply=apply, after_intents_s=point)
            ok = outcome.ok(apply=apply)
            failures += not ok
            counts[outcome.active_after_kill] = counts.get(outcome.active_after_kill, 0) + 1
            where = {"after": f"+{point:.2f}s", "switch": f"switch +{point:.2f}s",
                     "intents": f"intents +{point * 1000:.0f}ms"}[kind]
            print(f"{number:>3} {'backfill --apply' if apply else 'backfill':<16} {where:<22} {str(outcome.killed):<6} "
                  f"{outcome.active_after_kill:<22} {outcome.legacy_changes:>7} {len(outcome.unaudited):>9} "
                  f"{str(outcome.rerun_matches):<10} {outcome.active_after_rerun:<6} {len(outcome.applied_twice):>5} "
                  f"{outcome.left_over:>4}  {'ok' if ok else 'FAIL'}", flush=True)
        print(f"{len(plan)} trials: active after the kill old {counts.get('old', 0)}, new {counts.get('new', 0)}, "
              f"a mix {len(plan) - counts.get('old', 0) - counts.get('new', 0)}; {failures} failed, "
              f"in {time.perf_counter() - started:.0f}s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
