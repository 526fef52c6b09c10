"""Benchmark: what saying where drift comes from costs `plan`, with and without, in one run.

    .venv/bin/python scripts/bench_drift.py [--accounts 10000] [--drifting 691] [--reuse] [--rounds 2]

Builds (or with --reuse keeps) bench_plan's fleet in scratch databases on the local PostgreSQL
(scripts/bench_plan.py `ingested_fleet`, databases bench_drift_<accounts>_*), then plans it at the
fleet's T in alternating rounds: without drift (`owners=None`) and with it (the default ownership
map), each both as a full replay (`kept_facts=False`) and with kept facts (the second plan onwards
finds them). Prints each round's seconds, the best of each, and the ratio with / without (target
<= 1.20), and how many corrections carry a drift by cause.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_plan import NOW, ingested_fleet  # noqa: E402

from domain.owners import Owners  # noqa: E402
from domain.rules import RULES_V1  # noqa: E402
from eventlog.stores import Stores  # noqa: E402
from projections.plan import PlanResult, plan  # noqa: E402


def timed(dsns: dict[str, str], *, owners: Owners | None, kept_facts: bool) -> tuple[float, PlanResult]:
    started = time.perf_counter()
    result = plan(Stores.from_dsns(dsns), RULES_V1, NOW, workers=2, kept_facts=kept_facts, owners=owners)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--drifting", type=int, default=691)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    dsns = ingested_fleet(args.accounts, args.drifting, reuse=args.reuse, prefix="bench_drift")
    timed(dsns, owners=None, kept_facts=True)  # the kept facts, kept (and the caches warm)
    best: dict[tuple[str, bool], float] = {}
    said: PlanResult | None = None
    for round_ in range(1, args.rounds + 1):
        for kept in (False, True):
            for label, owners in (("without drift", None), ("with drift", Owners())):
                seconds, result = timed(dsns, owners=owners, kept_facts=kept)
                best[(label, kept)] = min(best.get((label, kept), seconds), seconds)
                said = result if owners is not None else said
                print(f"round {round_}  {'kept facts ' if kept else 'full replay'}  {label:<14} {seconds:>7.2f} s  "
                      f"({result.accounts_checked} accounts, {result.accounts_disagreeing} disagreeing, "
                      f"{len(result.corrections)} corrections)", flush=True)
    for kept in (False, True):
        without, with_ = best[("without drift", kept)], best[("with drift", kept)]
        print(f"best of {args.rounds}, {'kept facts ' if kept else 'full replay'}: without {without:.2f} s, "
              f"with {with_:.2f} s, with / without {with_ / without:.2f}   (target <= 1.20)")
    assert said is not None
    causes = Counter(c.drift.cause for c in said.corrections if c.drift is not None)
    print(f"corrections with a drift: {sum(causes.values())} of {len(said.corrections)}: "
          + ", ".join(f"{n} {cause}" for cause, n in sorted(causes.items())))


if __name__ == "__main__":
    main()
