"""kill -9 of `recompute project --follow` at random points, then what must hold.

    .venv/bin/python scripts/follow_kill_trials.py [--trials 20] [--accounts 3] [--seed 1] [--cdc]

On scratch databases (dropped after): a calm world of accounts at the real now. Each trial starts
a follower, writes legacy changes for fresh accounts (an invoice 5 or 25 days overdue: retrying
or suspended), and SIGKILLs the follower after a random delay (0 to 2 s: while it ingests,
evaluates, writes the stores, settles or sleeps). Then two followers, one of them killed at
random while the other goes on, with more changes. A last one-pass `project` finishes the job.
Checked at the end:
  nothing lost            every changed account is corrected (`plan` finds no account disagreeing)
  nothing recorded twice  one log event per legacy row version (no row's version appended twice)
  nothing applied twice   no correction in the audit applied more than once, none pending, no
                          event held; each changed account's corrections applied exactly once
Prints a line per trial and the totals; exits 1 if anything failed.
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulation.harness.databases import STORES, scratch_databases  # noqa: E402
from tests.support.follow import (  # noqa: E402
    RECOMPUTE,
    a_calm_world,
    an_overdue_invoice,
    applied,
    dunning_stage,
    env_of,
    project,
)


def follower(dsns, *args: str) -> subprocess.Popen:
    return subprocess.Popen([*RECOMPUTE, "project", "--follow", "--lease", "1", "--max-share", "1", *args],
                            env=env_of(dsns), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill(process: subprocess.Popen) -> bool:
    alive = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait()
    return alive


def change(dsns, accounts: list[str], rng: random.Random) -> None:
    for account in accounts:
        an_overdue_invoice(dsns, account, days=rng.choice((5, 25)))


def duplicated_versions(eventstore: str) -> int:
    """Legacy row versions appended more than once in a row (the same row content twice running)."""
    with psycopg.connect(eventstore) as conn:
        return conn.execute(
            "SELECT count(*) FROM (SELECT body, lag(body) OVER (PARTITION BY k ORDER BY notification_id) AS prev FROM ("
            " SELECT notification_id, j - 'position' - 'recorded_at' - 'source_time' AS body,"
            "  concat_ws('.', j ->> 'store', j ->> 'table', j ->> 'key') AS k FROM ("
            "  SELECT notification_id, convert_from(state, 'UTF8')::jsonb AS j FROM recompute_events"
            "  WHERE originator_id <> 'catalog:product_config') e) s) d WHERE body = prev").fetchone()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--accounts", type=int, default=3, help="accounts changed per trial")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cdc", action="store_true", help="the legacy stores read through change streams (cdc setup)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    per = args.accounts
    with scratch_databases(*STORES) as dsns:
        accounts = a_calm_world(dsns, accounts=per * (args.trials + 4) + 10)
        if args.cdc:
            subprocess.run([*RECOMPUTE, "cdc", "setup"], env=env_of(dsns), capture_output=True, timeout=300, check=True)
        project(dsns, "--max-share", "1")  # the generation, every state
        fresh = iter(accounts)
        changed: list[str] = []
        killed = mid_protocol = 0
        for trial in range(1, args.trials + 1):
            process = follower(dsns)
            time.sleep(rng.uniform(0.5, 1.5))  # started, or still starting
            mine = [next(fresh) for _ in range(per)]
            change(dsns, mine, rng)
            changed += mine
            delay = rng.uniform(0.0, 1.5)
            time.sleep(delay)
            was_alive = kill(process)
            killed += was_alive
            corrected = sum(dunning_stage(dsns, a) not in (None, "none") for a in mine)
            with psycopg.connect(dsns["eventstore"]) as conn:
                in_flight = conn.execute("SELECT count(*) FROM correction_audit WHERE status = 'pending'").fetchone()[0]
            mid_protocol += in_flight > 0
            print(f"trial {trial:>2}: kill -9 {delay:.2f}s after the changes ({'alive' if was_alive else 'had exited'}),"
                  f" {corrected}/{per} of its accounts corrected before, {in_flight} intents left pending")
        one, two = follower(dsns), follower(dsns)
        time.sleep(2.0)
        mine = [next(fresh) for _ in range(per * 3)]
        change(dsns, mine, rng)
        changed += mine
        time.sleep(rng.uniform(0.0, 1.0))
        killed += kill(one)
        print("two followers: one killed -9 while both ran; the other goes on")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(dunning_stage(dsns, a) not in (None, "none") for a in mine):
            time.sleep(0.2)
        survivor_did = all(dunning_stage(dsns, a) not in (None, "none") for a in mine)
        two.send_signal(signal.SIGTERM)
        survivor_exit = two.wait(timeout=60)
        project(dsns, "--max-share", "1")
        done = applied(dsns)
        twice = [c for c, n in Counter(done).items() if n > 1]
        by_account = Counter(a for a, *_ in done)
        with psycopg.connect(dsns["eventstore"]) as conn:
            stuck = conn.execute("SELECT (SELECT count(*) FROM correction_audit WHERE status = 'pending'), "
                                 "(SELECT count(*) FROM outbox_event WHERE status = 'held')").fetchone()
        planned = orjson.loads(subprocess.run([*RECOMPUTE, "plan", "--json"], env=env_of(dsns), capture_output=True,
                                              text=True, timeout=300, check=True).stdout)
        versions_twice = duplicated_versions(dsns["eventstore"])
        uncorrected = [a for a in changed if by_account[a] == 0]
        untouched_written = [a for a in by_account if a not in changed]
        print(f"{args.trials} trials, {killed} followers killed -9 while running ({mid_protocol} between an intent "
              f"and its settlement); {len(changed)} accounts changed")
        print(f"  the surviving follower corrected the killed one's accounts: {survivor_did}; it exited {survivor_exit}")
        print(f"  corrections applied: {len(done)}; applied twice: {len(twice)}; pending/held left: {stuck[0]}/{stuck[1]}")
        print(f"  accounts disagreeing after: {planned['accounts_disagreeing']}; changed accounts never corrected: "
              f"{len(uncorrected)}; unchanged accounts written: {len(untouched_written)}")
        print(f"  legacy row versions recorded twice in the log: {versions_twice}")
        ok = (not twice and stuck == (0, 0) and planned["accounts_disagreeing"] == 0 and not uncorrected
              and not untouched_written and versions_twice == 0 and survivor_did and survivor_exit == 0)
        print("OK" if ok else "FAILED")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
