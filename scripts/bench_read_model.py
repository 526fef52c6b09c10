"""Benchmark: `plan` with kept facts (projections/evaluation/kept_facts.py) against a full replay.

    .venv/bin/python scripts/bench_read_model.py [--accounts 10000] [--reuse] [--changed 0.01] [--rounds 3]

Builds (or with --reuse keeps) a fleet in `bench_readmodel_<accounts>_*` databases, ingests it,
and prints in one run, each plan at the same T, in one process (2 account ranges, run one after
the other: no executor is given, so plan runs them inline; every line alike):
  1. a full replay (kept_facts=False: reads and folds every event, keeps nothing);
  2. the first plan with kept facts (folds everything, and keeps the facts);
  3. a plan on the unchanged log (every account's kept facts stand for its fold, and the decisions
     kept beside them stand at T but where T ends one);
  4. a plan after `--changed` of the accounts' streams moved (two events appended to each);
with wall time, events of the log per second, the ratio to the full replay, and whether the
corrections equal the full replay's (4 against a full replay of the moved log). Runs vary on
shared cores: 1, 3 and 4 are the best of --rounds timings, interleaved; compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from pathlib import Path

import orjson
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_plan import NOW, ingested_fleet  # noqa: E402

from domain.events import LegacyRowObserved  # noqa: E402
from domain.rules import RULES_V1  # noqa: E402
from eventlog.account_log import append_events  # noqa: E402
from eventlog.stores import Stores  # noqa: E402
from projections.plan import PlanResult, plan  # noqa: E402
from projections.read_model.tables import ensure_read_model  # noqa: E402


def timed(dsns: dict[str, str], **kwargs: bool) -> tuple[PlanResult, float]:
    started = time.perf_counter()
    result = plan(Stores.from_dsns(dsns), RULES_V1, NOW, workers=2, **kwargs)
    return result, time.perf_counter() - started


def log_events(eventstore: str) -> int:
    with psycopg.connect(eventstore) as conn:
        return conn.execute("SELECT count(*) FROM recompute_events").fetchone()[0]


def move_streams(dsns: dict[str, str], share: float) -> int:
    """Appends two observations of its cf_prod.accounts row (timed an hour before T, so the
    truth reads them) to every 1/share-th account's stream; returns how many streams moved."""
    with psycopg.connect(dsns["cf_prod"], options="-c TimeZone=UTC") as conn:
        rows = [orjson.loads(r) for (r,) in conn.execute(
            "SELECT row_to_json(a)::text FROM accounts a ORDER BY account_id")]
    chosen = rows[::max(1, round(1 / share))]
    at = NOW - timedelta(hours=1)
    events = [LegacyRowObserved(originator_id=row["account_id"], originator_version=0, store="cf_prod",
                                table="accounts", key={"account_id": row["account_id"]}, row=row,
                                position=f"bench_readmodel:{n}", source_time=at, recorded_at=at)
              for row in chosen for n in (1, 2)]
    with psycopg.connect(dsns["eventstore"]) as conn, conn.transaction():
        append_events(conn, events)
    return len(chosen)


def standing_decisions(dsns: dict[str, str]) -> int:
    with psycopg.connect(dsns["eventstore"]) as conn:
        return conn.execute("SELECT count(*) FROM read_model_facts WHERE decided_state IS NOT NULL "
                            "AND decided_as_of <= %s AND (decided_until IS NULL OR %s < decided_until)",
                            (NOW, NOW)).fetchone()[0]


def line(label: str, seconds: float, events: int, full: float, same: bool | None) -> None:
    agree = "" if same is None else f"  corrections {'equal' if same else 'DIFFER'}"
    print(f"{label:<44} {seconds:>7.2f} s  {events / seconds:>10,.0f} events/s  {full / seconds:>5.2f}x{agree}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--drifting", type=int, default=691)
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="timings of 1, 3 and 4: the best of this many")
    args = parser.parse_args()
    dsns = ingested_fleet(args.accounts, args.drifting, reuse=args.reuse, prefix="bench_readmodel")
    with psycopg.connect(dsns["eventstore"]) as conn:
        ensure_read_model(conn)
        conn.execute("TRUNCATE read_model_facts")
    events = log_events(dsns["eventstore"])
    print(f"{args.accounts:,} accounts, {events:,} events in the log; plan at {NOW.isoformat()}, "
          "in one process (2 ranges, inline)")

    full, full_s = timed(dsns, kept_facts=False)
    expected = orjson.dumps(full.as_json())
    first, first_s = timed(dsns)
    kept, kept_s = timed(dsns)
    for _ in range(args.rounds - 1):  # interleaved, the best of each: the cores are shared
        full_s = min(full_s, timed(dsns, kept_facts=False)[1])
        kept_s = min(kept_s, timed(dsns)[1])
    line("1. full replay (kept_facts=False)", full_s, events, full_s, None)
    line("2. first plan with kept facts (keeps them)", first_s, events, full_s, orjson.dumps(first.as_json()) == expected)
    line("3. unchanged log, kept facts", kept_s, events, full_s, orjson.dumps(kept.as_json()) == expected)
    print(f"   {kept.events_folded:,} events folded of {events:,}; {standing_decisions(dsns):,} accounts' kept "
          "decisions stood (target: >= 5x the full replay)")

    after_s = replayed_s = float("inf")
    same = True
    for _ in range(args.rounds):  # each round moves other streams (`--changed` of them) anew
        moved = move_streams(dsns, args.changed)
        after, seconds = timed(dsns)
        after_s = min(after_s, seconds)
        replayed, seconds = timed(dsns, kept_facts=False)
        replayed_s = min(replayed_s, seconds)
        same = same and orjson.dumps(after.as_json()) == orjson.dumps(replayed.as_json())
    events = log_events(dsns["eventstore"])
    line(f"4. {moved:,} streams moved, kept facts", after_s, events, replayed_s, same)
    line("   the same log, full replay", replayed_s, events, replayed_s, None)
    print(f"   {after.events_folded:,} events folded (the moved streams); best of {args.rounds} rounds each")

if __name__ == "__main__":
    main()
