"""Two `recompute project --follow` under load while faults drawn at random hit them, then what must hold.

    .venv/bin/python scripts/follow_chaos.py [--seed 1] [--minutes 5] [--accounts 1000] [--faults all|a,b,...]

On a PostgreSQL cluster of its own (tests/support/clusters.py: `wal_level = logical`, a free port;
it is restarted here, never the shared server): a calm world of --accounts accounts at the real
now with change streams (`cdc setup`), two followers (`project --follow --lease 3 --max-share 1`, --followers, --lease;
the first one receiving webhooks on a port of its own) whose broker is RabbitMQ through a TCP proxy
this script controls (tests/support/proxy.py; vhost `bench_follow`, as scripts/load_follow.py).
For --minutes: legacy changes at --rate/s and webhooks at --webhooks/s (scripts/load_follow.py's
writer and sender), and after --steady-s of quiet, each fault kind of FAULTS once, in an order and
with gaps drawn from --seed:

  restart_fast, restart_immediate   pg_ctl restart -m fast | immediate of the cluster
  listen_killed                     the LISTEN backends terminated (application_name 'recompute follow wake')
  replication_killed                every walsender terminated
  table_unpublished                 subs_dunning dropped from publication recompute_subs, added back 15 s later
  slot_dropped                      billing_prod's slot dropped (its reader terminated), `cdc setup` 10 s later
  broker_down                       the proxy to RabbitMQ down for 10 s
  follower_frozen                   SIGSTOP of the second follower's process group for 15 s, then SIGCONT
  follower_killed                   kill -9 of the first follower's process group, started again at once

Then the load stops, the followers get until they have caught up with the log (at most --drain-s),
and the checks:
  every account true       `plan --json`: no account disagreeing
  nothing lost             `ingest --resync` of every legacy store appends nothing (and, said but
                           not checked, how many changes found no correction after them: under a
                           lag of seconds, an invoice overdue then paid before the follower saw
                           either needs none)
  nothing applied twice    no legacy row version recorded twice running in the log, no cell set to the
                           same value by two applied corrections running (the load never writes those
                           cells itself), no intent left pending
  no effect unwritten      no event ready or sent with no correction applied, none whose body names
                           one not applied, none held (one of an account's corrections in two stores
                           whose write in one did not happen is said: its event names what was)
and the lag from a change to its correction committed, p50/p99/max, by phase: steady, during a
fault, recovering (--recovery-s after a fault's end), with each fault's recovery two ways: the
seconds from its end until every later change was corrected within 1 s, and until the changes
made from then to the next fault meet the steady target (p99 <= 1 s). Prints a summary; exits 1 if a check
failed. The lead's caveat applies to any figure: what else runs on the machine shows in the lag.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from load_follow import (  # noqa: E402,I001
    Change, Lag, announce_customers, applied_since, broker_url, lags, legacy_writer, over_time, percentiles,
    steps_summary,
    webhook_sender,
)
from follow_kill_trials import duplicated_versions  # noqa: E402
from simulation.harness.databases import STORES, scratch_databases  # noqa: E402
from tests.support.cdc import drop_slot  # noqa: E402
from tests.support.clusters import LOGICAL, Cluster, a_cluster  # noqa: E402
from tests.support.follow import RECOMPUTE, a_calm_world, env_of  # noqa: E402
from tests.support.proxy import a_proxy  # noqa: E402
from tests.support.serve import SECRET  # noqa: E402

FAULTS = ("restart_fast", "restart_immediate", "listen_killed", "replication_killed", "table_unpublished",
          "slot_dropped", "broker_down", "follower_frozen", "follower_killed")
LAG_OK_S = 1.0


class Follower:
    """A `project --follow` in a process group of its own; its output kept with the time of each line."""

    def __init__(self, name: str, env: dict[str, str], lease_s: float, *args: str) -> None:
        self.name, self.env, self.args = name, env, ("--lease", f"{lease_s:g}", *args)
        self.lines: list[tuple[float, str, str]] = []  # (time, stream, line)
        self.url: str | None = None
        self.start()

    def start(self) -> None:
        self.url = None
        self.process = subprocess.Popen([*RECOMPUTE, "project", "--follow", "--max-share", "1",
                                         *self.args], env=self.env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, start_new_session=True)
        for stream, name in ((self.process.stdout, "out"), (self.process.stderr, "err")):
            threading.Thread(target=self._drain, args=(stream, name), daemon=True).start()

    def _drain(self, stream, name: str) -> None:
        for line in iter(stream.readline, ""):
            self.lines.append((time.time(), name, line.rstrip("\n")))
            if found := re.search(r"serving on (http://\S+)", line):
                self.url = found.group(1)

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def kill_and_restart(self) -> None:
        self.signal_group(signal.SIGKILL)
        self.process.wait()
        self.start()

    def stop(self) -> int:
        self.signal_group(signal.SIGCONT)
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            return self.process.wait()


@dataclass
class Fault:
    kind: str
    start: float = 0.0  # time.time()
    end: float = 0.0


@dataclass
class Chaos:
    cluster: Cluster
    dsns: dict[str, str]
    env: dict[str, str]
    followers: list[Follower]
    proxy: object
    faults: list[Fault] = field(default_factory=list)

    def run(self, kind: str) -> Fault:
        fault = Fault(kind, start=time.time())
        getattr(self, kind)()
        fault.end = time.time()
        self.faults.append(fault)
        return fault

    def restart_fast(self) -> None:
        self.cluster.restart("fast")

    def restart_immediate(self) -> None:
        self.cluster.restart("immediate")

    def _terminate(self, where: str) -> None:
        with psycopg.connect(self.cluster.dsn(), autocommit=True) as conn:
            conn.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {where}")

    def listen_killed(self) -> None:
        self._terminate("application_name = 'recompute follow wake'")

    def replication_killed(self) -> None:
        self._terminate("backend_type = 'walsender'")

    def table_unpublished(self) -> None:
        execute(self.dsns["subs"], "ALTER PUBLICATION recompute_subs DROP TABLE subs_dunning")
        time.sleep(15)
        execute(self.dsns["subs"], "ALTER PUBLICATION recompute_subs ADD TABLE subs_dunning")

    def slot_dropped(self) -> None:
        drop_slot(self.dsns["billing_prod"])
        time.sleep(10)
        setup = subprocess.run([*RECOMPUTE, "cdc", "setup", "--source", "billing_prod"], env=self.env,
                               capture_output=True, text=True, timeout=300)
        if setup.returncode:
            print(f"  cdc setup failed: {setup.stderr.strip()}")

    def broker_down(self) -> None:
        self.proxy.down()  # type: ignore[attr-defined]
        time.sleep(10)
        self.proxy.up()  # type: ignore[attr-defined]

    def follower_frozen(self) -> None:
        self.followers[1].signal_group(signal.SIGSTOP)
        time.sleep(15)
        self.followers[1].signal_group(signal.SIGCONT)

    def follower_killed(self) -> None:
        self.followers[0].kill_and_restart()


def execute(dsn: str, statement: str) -> None:
    for _ in range(50):  # the server may be restarting under another fault's tail
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
                conn.execute(statement)
            return
        except psycopg.OperationalError:
            time.sleep(0.2)


def schedule(rng: random.Random, kinds: list[str], minutes: float, steady_s: float) -> list[tuple[float, str]]:
    """Pure: (seconds after the load's start, fault) for each kind once, in a random order, spread
    over the run with random gaps after `steady_s` of quiet."""
    order = kinds[:]
    rng.shuffle(order)
    span = minutes * 60 - steady_s - 30  # the last fault ends well before the load does
    slot = span / max(len(order), 1)
    return [(steady_s + i * slot + rng.uniform(0, slot * 0.3), kind) for i, kind in enumerate(order)]


def phase_of(at: float, faults: list[Fault], recovery_s: float) -> str:
    for fault in faults:
        if fault.start <= at <= fault.end:
            return "fault"
    if any(fault.end < at <= fault.end + recovery_s for fault in faults):
        return "recovering"
    return "steady"


def recovery_of(fault: Fault, found: list[Lag], until: float) -> float | None:
    """Seconds from the fault's end until every change made after it was corrected within LAG_OK_S;
    None: not within the window. `until`: the next fault's start (or the load's end); a change made
    less than LAG_OK_S before it is left out, as the next fault can delay it (counted against this
    one, a change made 0.1 s before a follower is frozen made the fault before look 15 s long)."""
    after = sorted((lag for lag in found if fault.end <= lag.change.at.timestamp() < until - LAG_OK_S),
                   key=lambda lag: lag.change.at)
    late = [lag for lag in after if lag.committed is None or lag.committed > LAG_OK_S]
    if not late:
        return 0.0
    last = late[-1]
    if last.committed is None:
        return None
    return max(0.0, last.change.at.timestamp() + last.committed - fault.end)


def back_to_steady(fault: Fault, found: list[Lag], until: float, step_s: float = 0.5) -> float | None:
    """Seconds from the fault's end until the changes made from then on (to `until`, less LAG_OK_S,
    as `recovery_of`) meet the steady phase's target: p99 of their lag <= LAG_OK_S, counted as the
    steady phase is (changes with no correction after them left out). The first such multiple of
    `step_s`; None: none. `recovery_of` asks more: every later change within LAG_OK_S, a test
    that the steady phase itself does not pass (its max is seconds)."""
    after = sorted((lag.change.at.timestamp(), lag.committed) for lag in found if lag.committed is not None
                   and fault.end <= lag.change.at.timestamp() < until - LAG_OK_S)
    waited = 0.0
    while fault.end + waited < until:
        rest = sorted(committed for at, committed in after if at >= fault.end + waited)
        if not rest:  # nothing made after the fault, or every change left was late
            return 0.0 if not after else None
        if rest[min(len(rest) - 1, int(0.99 * len(rest)))] <= LAG_OK_S:
            return waited
        waited += step_s
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--stripe-accounts", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100.0, help="legacy changes a second")
    parser.add_argument("--webhooks", type=float, default=10.0, help="webhook deliveries a second")
    parser.add_argument("--faults", default="all", help=f"all, or some of: {', '.join(FAULTS)}")
    parser.add_argument("--steady-s", type=float, default=30.0, help="quiet load before the first fault")
    parser.add_argument("--recovery-s", type=float, default=10.0, help="after a fault's end, the recovering phase")
    parser.add_argument("--drain-s", type=float, default=300.0,
                        help="at most this long for the followers to catch up with the log after the load")
    parser.add_argument("--followers", type=int, choices=(1, 2), default=2,
                        help="with 1, follower_frozen has none to freeze (leave it out)")
    parser.add_argument("--lease", type=float, default=3.0, help="the followers' --lease")
    parser.add_argument("--timings", metavar="PREFIX", help="each follower's step timings to PREFIX.<name>.jsonl, "
                                                            "summed up (scripts/load_follow.py)")
    parser.add_argument("--log", metavar="FILE", help="write the followers' output here, each line timed")
    args = parser.parse_args()
    kinds = list(FAULTS) if args.faults == "all" else args.faults.split(",")
    if unknown := set(kinds) - set(FAULTS):
        parser.error(f"unknown faults: {', '.join(sorted(unknown))}")
    rng = random.Random(args.seed)
    plan = schedule(rng, kinds, args.minutes, args.steady_s)
    broker = broker_url()
    with a_cluster(**LOGICAL) as cluster, scratch_databases(*STORES, server=cluster.server) as dsns, \
            a_proxy(("127.0.0.1", 5672)) as proxy:
        accounts = a_calm_world(dsns, accounts=args.accounts)
        stripe_accounts, legacy_accounts = accounts[:args.stripe_accounts], accounts[args.stripe_accounts:]
        env = env_of(dsns, PYTHONUNBUFFERED="1", STRIPE_WEBHOOK_SECRET=SECRET, RECOMPUTE_LOG_FORMAT="text",
                     **({"RECOMPUTE_BROKER_URL": broker.replace(":5672/", f":{proxy.port}/")} if broker else {}))
        subprocess.run([*RECOMPUTE, "cdc", "setup"], env=env, capture_output=True, text=True, timeout=300, check=True)
        subprocess.run([*RECOMPUTE, "project", "--max-share", "1"], env=env, capture_output=True, text=True,
                       timeout=600, check=True)  # the generation, every account's state
        timed = [] if not args.timings else [(name, f"{args.timings}.{name}.jsonl") for name in ("first", "second")]
        extra = {name: ("--step-timings", path) for name, path in timed}
        followers = [Follower("first", env, args.lease, "--port", "0", *extra.get("first", ()))]
        if args.followers == 2:
            followers.append(Follower("second", env, args.lease, *extra.get("second", ())))
        try:
            while followers[0].url is None:
                if followers[0].process.poll() is not None:
                    raise SystemExit("the first follower did not start:\n" + "\n".join(x[2] for x in followers[0].lines))
                time.sleep(0.1)
            announce_customers(followers[0].url, stripe_accounts)
            time.sleep(5)
            chaos = Chaos(cluster, dsns, env, followers, proxy)
            print(f"seed {args.seed}: {args.accounts} accounts ({args.stripe_accounts} with Stripe), {args.rate:g} legacy "
                  f"changes/s + {args.webhooks:g} webhooks/s for {args.minutes:g} min; broker: "
                  f"{'RabbitMQ through a proxy' if broker else 'none'}; faults: "
                  + ", ".join(f"{kind} at {at:.0f}s" for at, kind in plan), flush=True)
            stop = threading.Event()
            changes: list[Change] = []
            quiet: list[int] = []
            seconds = args.minutes * 60
            load_started = datetime.now(UTC)
            writers = [threading.Thread(target=legacy_writer, args=(dsns, legacy_accounts[i::4], args.rate / 4, seconds,
                                                                     stop, changes, 1.0, quiet)) for i in range(4)]
            url: Callable[[], str | None] = lambda: followers[0].url  # noqa: E731
            writers += [threading.Thread(target=webhook_sender, args=(url, stripe_accounts[i::2], args.webhooks / 2,
                                                                      seconds, stop, changes)) for i in range(2)]
            for thread in writers:
                thread.start()
            t0 = time.time()
            try:
                for at, kind in plan:
                    time.sleep(max(0.0, t0 + at - time.time()))
                    fault = chaos.run(kind)
                    print(f"  {fault.start - t0:6.1f}s  {kind:<20} {fault.end - fault.start:5.1f}s", flush=True)
                for thread in writers:
                    thread.join()
            finally:
                stop.set()
            load_ended = time.time()
            drained = drain(dsns["eventstore"], args.drain_s)
            print(f"the followers caught up with the log {drained:.0f}s after the load ended" if drained is not None
                  else f"the followers had not caught up with the log {args.drain_s:g}s after the load ended",
                  flush=True)
            codes = [f.stop() for f in followers]
            if args.log:
                with open(args.log, "w") as out:
                    for f in followers:
                        for at, stream, line in f.lines:
                            out.write(f"{at - t0:8.2f} {f.name} {stream} {line}\n")
        finally:  # never leave a follower running against a cluster about to go (it would retry for ever)
            for follower in followers:
                follower.signal_group(signal.SIGKILL)
        found = lags(changes, applied_since(dsns["eventstore"], load_started))
        checks = final_checks(dsns, env)
    print(f"sent {len(changes) + len(quiet)} legacy changes and webhooks in {load_ended - t0:.0f}s "
          f"({sum(c.kind == 'webhook' for c in changes)} webhooks); followers exited {codes}")
    for phase in ("steady", "fault", "recovering"):
        mine = [lag.committed for lag in found if lag.committed is not None
                and phase_of(lag.change.at.timestamp(), chaos.faults, args.recovery_s) == phase]
        print(f"lag to correction committed, {phase:<10}: {percentiles(mine)}")
    print(f"to correction committed, p99/max s by 10 s of the load: {over_time(found, datetime.fromtimestamp(t0, UTC))}")
    for fault in chaos.faults:
        upto = min([f.start for f in chaos.faults if f.start > fault.end] + [load_ended])
        back, steady = recovery_of(fault, found, upto), back_to_steady(fault, found, upto)
        print(f"  {fault.kind:<20} lasted {fault.end - fault.start:5.1f}s; every later change within {LAG_OK_S:g}s "
              + ("never within the window" if back is None else f"{back:.1f}s after its end")
              + f"; the rest's p99 <= {LAG_OK_S:g}s (the steady target) "
              + ("never within the window" if steady is None else f"{steady:.1f}s after its end"))
    for name, path in timed[:len(followers)]:
        print(f"{name} follower's " + steps_summary(Path(path), t0, load_ended))
    missed = sum(lag.committed is None for lag in found)
    print(f"changes with no correction after them: {missed} (not a loss by itself: an invoice overdue and "
          "paid before the follower saw either needs none; plan and resync below say whether anything was lost)")
    for name, value in checks.items():
        print(f"{name}: {value}")
    ok = all(value == 0 for value in checks.values()) and all(code == 0 for code in codes)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


def drain(eventstore: str, within_s: float, settled_s: float = 3.0) -> float | None:
    """Seconds until every partition's position reached the log's head and stayed there `settled_s`
    (the followers' own writes come back through the streams meanwhile); None: not within `within_s`."""
    started = time.monotonic()
    since = None
    while time.monotonic() - started < within_s:
        with psycopg.connect(eventstore) as conn:
            head, low = conn.execute(
                "SELECT (SELECT max(notification_id) FROM recompute_events), (SELECT min(p.position) FROM "
                "follow_position p JOIN read_model_generation g ON g.id = p.generation AND g.active)").fetchone()
        if low is not None and low >= head:
            since = since or time.monotonic()
            if time.monotonic() - since >= settled_s:
                return since - started
        else:
            since = None
        time.sleep(0.5)
    return None


def final_checks(dsns: dict[str, str], env: dict[str, str]) -> dict[str, int]:
    planned = orjson.loads(subprocess.run([*RECOMPUTE, "plan", "--json"], env=env, capture_output=True, text=True,
                                          timeout=600, check=True).stdout)
    resync = subprocess.run([*RECOMPUTE, "ingest", "--source", "all", "--resync"], env=env, capture_output=True,
                            text=True, timeout=600)
    appended = sum(int(n) for n in re.findall(r"(?:cf_prod|billing_prod|subs): read \d+, appended (\d+)",
                                               resync.stdout))
    with psycopg.connect(dsns["eventstore"]) as conn:
        pending, held = conn.execute(
            "SELECT (SELECT count(*) FROM correction_audit WHERE status = 'pending'), "
            "(SELECT count(*) FROM outbox_event WHERE status = 'held')").fetchone()
        # An event of one account's corrections in two stores whose write in one of them did not happen
        # (a restart between the two stores' transactions: recovery settles that part 'abandoned', or
        # a compare-and-set found the row changed: 'stale') is ready with only what was applied: its
        # body must name exactly the applied members, and an event with none applied is never sent.
        unwritten, misnamed, partly = conn.execute(
            "SELECT count(*) FILTER (WHERE applied = 0), "
            "count(*) FILTER (WHERE applied > 0 AND jsonb_array_length(e.body->'corrections') <> applied), "
            "count(*) FILTER (WHERE applied > 0 AND members > applied) FROM outbox_event e JOIN ("
            " SELECT event_id, count(*) AS members, count(*) FILTER (WHERE status = 'applied') AS applied "
            " FROM correction_audit GROUP BY event_id) a USING (event_id) WHERE e.status IN ('ready', 'sent')"
        ).fetchone()
        cells = conn.execute("SELECT account_id, tbl, key::text, col, to_value::text FROM correction_audit "
                             "WHERE status = 'applied' ORDER BY id").fetchall()
        not_written = dict(conn.execute(
            "SELECT a.status || ' ' || a.tbl, count(*) FROM correction_audit a JOIN outbox_event e USING (event_id) "
            "WHERE e.status IN ('ready', 'sent') AND a.status <> 'applied' GROUP BY 1 ORDER BY 1").fetchall())
    print(f"events ready or sent for a correction in two stores of which one was not written (their bodies "
          f"name only what was): {partly}; the parts not written: {not_written or 'none'}")
    last: dict[tuple, str] = {}
    twice = Counter()
    for account, tbl, key, col, to in cells:
        cell = (account, tbl, key, col)
        if last.get(cell) == to:
            twice[cell] += 1
        last[cell] = to
    return {"accounts disagreeing (plan)": planned["accounts_disagreeing"],
            "rows the log missed (ingest --resync appended)": appended if resync.returncode == 0 else -1,
            "legacy row versions recorded twice running": duplicated_versions(dsns["eventstore"]),
            "cells set to the same value by two applied corrections running": sum(twice.values()),
            "intents left pending": pending, "events held": held,
            "events ready or sent with no correction applied": unwritten,
            "events whose body names a correction not applied": misnamed}


if __name__ == "__main__":
    sys.exit(main())
