"""Load on `recompute project --follow --port P`: legacy changes and Stripe webhooks at a steady
rate, and the lag from each change to its correction committed and to its event published.

    .venv/bin/python scripts/load_follow.py [--rate 500] [--webhooks 50] [--seconds 60] [--accounts 2000]

On scratch databases (dropped after) of a PostgreSQL cluster of its own (tests/support/clusters.py:
`wal_level = logical`, a free port, as scripts/follow_chaos.py): a calm world of --accounts accounts at the real now, their
change streams (`recompute cdc setup`; --snapshots: none, snapshot passes instead), one
follower process (`project --follow --port 0 --max-share 1`, the webhook receiver in it), and
RabbitMQ on a vhost of its own (`bench_follow`, made with rabbitmqctl when missing) so nothing
reaches the shared `/` exchange. Then, for --seconds:
  legacy   --rate single-row transactions a second: of them --correcting (default all) on
           billing_prod.invoices, each account in turn: an invoice 5 days overdue appears (the
           account goes to retrying), then is paid (back to none), each needing corrections; the
           others change subs_account.billing_email (evaluated, nothing to correct)
  webhooks --webhooks signed `invoice.payment_failed` deliveries a second for the Stripe invoices
           of the first accounts, attempt_count one more each time (subs_invoice must follow)
A change that needs corrections has its lag end at the first correction of its account committed after it (correction_audit
settled_at) and at that correction's event sent (outbox_event sent_at). Prints p50 / p99 / max of
both, for legacy changes and webhooks, and how many changes found no correction.
"""

from __future__ import annotations

import argparse
import bisect
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psycopg
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulation.harness.databases import STORES, scratch_databases  # noqa: E402
from tests.support.clusters import LOGICAL, a_cluster  # noqa: E402
from tests.support.follow import RECOMPUTE, a_calm_world, env_of  # noqa: E402
from tests.support.serve import SECRET, signed  # noqa: E402
from tests.support.stripe_world import a_customer, an_event  # noqa: E402
from tests.support.stripe_world import an_invoice as a_stripe_invoice  # noqa: E402

VHOST = "bench_follow"


@dataclass(frozen=True)
class Change:
    account: str
    at: datetime
    kind: str  # legacy | webhook


def broker_url() -> str | None:
    if not shutil.which("rabbitmqctl"):
        return None
    listed = subprocess.run(["rabbitmqctl", "list_vhosts"], capture_output=True, text=True, timeout=30).stdout
    if VHOST not in listed.split():
        subprocess.run(["rabbitmqctl", "add_vhost", VHOST], capture_output=True, timeout=30, check=True)
        subprocess.run(["rabbitmqctl", "set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*"],
                       capture_output=True, timeout=30, check=True)
    return f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"


def paced(rate: float, seconds: float, stop: threading.Event, work) -> None:
    started = time.monotonic()
    n = 0
    while not stop.is_set() and time.monotonic() - started < seconds:
        work(n)
        n += 1
        ahead = started + n / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)


def legacy_writer(dsns, accounts: list[str], rate: float, seconds: float, stop, changes: list[Change],
                  correcting: float, quiet: list[int]) -> None:
    """`correcting` of the changes need corrections (an invoice overdue, then paid); the others
    change a billing-profile column nothing is derived from (subs_account.billing_email). A change
    whose server went away (scripts/follow_chaos.py restarts it) is skipped and the connections
    opened again: only the changes committed are counted."""
    open_invoice: dict[str, str] = {}
    every = max(1, round(1 / correcting)) if correcting > 0 else 0
    held: dict[str, psycopg.Connection] = {}

    def conn(store: str) -> psycopg.Connection:
        if store not in held or held[store].closed or held[store].broken:
            held[store] = psycopg.connect(dsns[store], autocommit=True, connect_timeout=5)
        return held[store]

    def change(n: int) -> None:
        account = accounts[(n // every if every else n) % len(accounts)]
        # stamped before the statement: stamped after it, a writer thread that got no CPU for a moment
        # stamps a change the follower already corrected, and `lags` matches it with the next correction
        at = datetime.now(UTC)
        if not every or n % every:
            conn("subs").execute("UPDATE subs_account SET billing_email = %s, updated_at = now() "
                                 "WHERE account_id = %s", (f"{n}@example.com", account))
            quiet.append(1)
            return
        if account in open_invoice:
            conn("billing_prod").execute("UPDATE invoices SET status = 'paid', amount_paid = amount_due, "
                                         "updated_at = now() WHERE invoice_id = %s", (open_invoice[account],))
            del open_invoice[account]
        else:
            invoice = f"inv_{account[4:]}_{n}"
            conn("billing_prod").execute("INSERT INTO invoices VALUES (%s, %s, NULL, 'open', 'usd', 2900, 0, "
                                         "now() - interval '5 days', now(), now())", (invoice, account))
            open_invoice[account] = invoice
        changes.append(Change(account, at, "legacy"))

    def one(n: int) -> None:
        try:
            change(n)
        except psycopg.OperationalError:
            for gone in held.values():
                gone.close()
            held.clear()
            time.sleep(0.1)
    try:
        paced(rate, seconds, stop, one)
    finally:
        for open_ in held.values():
            open_.close()


def webhook_sender(url: str | Callable[[], str | None], accounts: list[str], rate: float, seconds: float, stop,
                   changes: list[Change]) -> None:
    """`url`: the receiver's, or where it is now (None: none up); a delivery that fails is not counted."""
    session = requests.Session()
    attempts = dict.fromkeys(accounts, 1)
    last = dict.fromkeys(accounts, 0)

    def one(n: int) -> None:
        account = accounts[n % len(accounts)]
        now = int(time.time())
        if last[account] >= now:
            return  # one event a second per invoice: Stripe's `created` decides, and never in the future
        where = url() if callable(url) else url
        if where is None:
            return
        last[account] = now
        attempts[account] += 1
        invoice = a_stripe_invoice(f"in_{account}", f"cus_{account}", status="open",
                                   attempt_count=attempts[account], created=now - 3600)
        body = orjson.dumps(an_event(f"evt_{account}_{n}", "invoice.payment_failed", invoice, now))
        sent = datetime.now(UTC)
        try:
            answer = session.post(f"{where}/webhooks/stripe", data=body, timeout=10,
                                  headers={"Stripe-Signature": signed(body), "Content-Type": "application/json"})
        except requests.RequestException:
            attempts[account] -= 1
            return
        if answer.status_code == 200:
            changes.append(Change(account, sent, "webhook"))
        else:
            attempts[account] -= 1
    paced(rate, seconds, stop, one)


def announce_customers(url: str, accounts: list[str]) -> None:
    """A `customer.created` delivery for each account's Stripe customer: the customers first, they name the accounts."""
    now = int(time.time())
    for account in accounts:
        body = orjson.dumps(an_event(f"evt_cus_{account}", "customer.created",
                                     a_customer(f"cus_{account}", account, created=now - 7200), now - 7200))
        requests.post(f"{url}/webhooks/stripe", data=body, timeout=10,
                      headers={"Stripe-Signature": signed(body), "Content-Type": "application/json"})


def applied_since(eventstore: str, since: datetime) -> dict[str, list[tuple[datetime, datetime | None]]]:
    """Each account's applied corrections settled after `since`: (settled_at, its event's sent_at), in order."""
    with psycopg.connect(eventstore, options="-c TimeZone=UTC") as conn:
        rows = conn.execute("SELECT a.account_id, a.settled_at, e.sent_at FROM correction_audit a "
                            "JOIN outbox_event e USING (event_id) WHERE a.status = 'applied' AND a.settled_at > %s "
                            "ORDER BY a.account_id, a.settled_at", (since,)).fetchall()
    by_account: dict[str, list[tuple[datetime, datetime | None]]] = {}
    for account, settled, sent in rows:
        by_account.setdefault(account, []).append((settled, sent))
    return by_account


@dataclass(frozen=True)
class Lag:
    change: Change
    committed: float | None  # seconds to the first correction of its account committed after it (None: none)
    published: float | None  # ... and to that correction's event sent


def lags(changes: list[Change], by_account: dict[str, list[tuple[datetime, datetime | None]]]) -> list[Lag]:
    found = []
    for change in changes:
        corrections = by_account.get(change.account, [])
        i = bisect.bisect_left([s for s, _ in corrections], change.at)
        if i == len(corrections):
            found.append(Lag(change, None, None))
            continue
        settled, sent = corrections[i]
        found.append(Lag(change, (settled - change.at).total_seconds(),
                         None if sent is None else (sent - change.at).total_seconds()))
    return found


def worst(eventstore: str, found: list[Lag], n: int) -> str:
    """The `n` changes with the longest lag to a correction, each with its account's audit from 20 s
    before the change to its correction (a diagnosis of the tail: was it late, or matched with a
    later change's correction because its own was not needed?)."""
    late = sorted((lag for lag in found if lag.committed is not None), key=lambda lag: -lag.committed)[:n]
    lines = []
    with psycopg.connect(eventstore, options="-c TimeZone=UTC") as conn:
        for lag in late:
            at, account = lag.change.at, lag.change.account
            lines.append(f"{lag.change.kind} change of {account} at {at:%H:%M:%S.%f}: committed after {lag.committed:.2f} s")
            audit = conn.execute(
                "SELECT a.settled_at, a.status, a.tbl, a.col, a.to_value::text, a.as_of FROM correction_audit a "
                "WHERE a.account_id = %s AND a.settled_at BETWEEN %s - interval '20 s' AND %s + make_interval(secs => %s) "
                "ORDER BY a.settled_at", (account, at, at, int(lag.committed) + 2)).fetchall()
            for settled, status, tbl, col, to, as_of in audit:
                lines.append(f"    audit {settled:%H:%M:%S.%f} {status:<9} {tbl}.{col} -> {to} (as of {as_of:%H:%M:%S.%f})")
    return "\n".join(lines)


def percentiles(values: list[float]) -> str:
    if not values:
        return "none"
    values = sorted(values)

    def at(q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))]
    return f"p50 {at(0.5) * 1000:.0f} ms, p99 {at(0.99) * 1000:.0f} ms, max {values[-1] * 1000:.0f} ms (n={len(values)})"


def over_time(found: list[Lag], start: datetime, every_s: float = 10.0) -> str:
    """p99 / max of the lag to correction committed, per `every_s` of the load (by when the change was
    made): whether the lag is flat, or grows, or has one bad moment."""
    windows: dict[int, list[float]] = {}
    for lag in found:
        if lag.committed is not None:
            windows.setdefault(int((lag.change.at - start).total_seconds() // every_s), []).append(lag.committed)

    def tail(values: list[float]) -> str:
        values = sorted(values)
        return f"{values[min(len(values) - 1, int(0.99 * len(values)))]:.2f}/{values[-1]:.2f}"
    return "  ".join(f"{w * every_s:.0f}s {tail(v)}" for w, v in sorted(windows.items()))


def cpu_seconds(pid: int) -> float:
    """The CPU time (user + system) process `pid` has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def steps_summary(path: Path, start: float, end: float, cpu_s: float | None = None) -> str:
    """The follower's steps that ended during the load: how many, their size and duration, the
    step time and the process's CPU time (`cpu_s`: its ingest and webhooks too) per account
    evaluated, and the mean time between consecutive labels (each phase named by the label ending it)."""
    steps = [s for s in map(orjson.loads, path.read_text().splitlines()) if start <= s["at"] <= end]
    steps = [s for s in steps if s["accounts"]]
    if not steps:
        return "steps: none during the load"
    phases: dict[str, float] = {}
    for step in steps:
        before = 0.0
        for label, at in sorted(step["marks"].items(), key=lambda kv: kv[1]):
            name = label.split(":")[0] if label.startswith("wrote:") else label
            phases[name] = phases.get(name, 0.0) + at - before
            before = at
    total = [s["marks"]["after"] for s in steps]
    n = len(steps)
    accounts = sum(s["accounts"] for s in steps)
    lines = [f"steps during the load: {n} ({n / (end - start):.1f}/s), accounts a step: mean "
             f"{accounts / n:.0f}, max {max(s['accounts'] for s in steps)}; "
             f"step time {percentiles(total)}; {1000 * sum(total) / accounts:.2f} ms of step an account"
             f"{'' if cpu_s is None else f', {1000 * cpu_s / accounts:.2f} ms of the process CPU an account'}; "
             "mean per phase (ending at):"]
    lines += [f"  {name:<24} {1000 * t / n:6.1f} ms  {100 * t / sum(total):4.1f}%" for name, t in phases.items()]
    longest = max(steps, key=lambda s: s["marks"]["after"])
    lines.append(f"the longest step: {longest['marks']['after'] * 1000:.0f} ms at {longest['at'] - start:.1f}s of the "
                 f"load, {longest['accounts']} accounts, {longest['events']} events, {longest['applied']} applied")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=500.0, help="legacy changes a second")
    parser.add_argument("--webhooks", type=float, default=50.0, help="webhook deliveries a second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--stripe-accounts", type=int, default=100)
    parser.add_argument("--snapshots", action="store_true",
                        help="no change streams: the legacy stores read by snapshot passes (without `cdc setup`)")
    parser.add_argument("--writers", type=int, default=4, help="threads writing the legacy changes")
    parser.add_argument("--correcting", type=float, default=1.0,
                        help="share of the legacy changes that need corrections (the rest: billing_email)")
    parser.add_argument("--worst", type=int, default=0, metavar="N",
                        help="for the N changes with the longest lag: the account's corrections and log events around it")
    parser.add_argument("--profile", metavar="FILE", default=None,
                        help="py-spy record the follower's process during the load (collapsed stacks by thread)")
    args = parser.parse_args()
    url_broker = broker_url()
    with a_cluster(**LOGICAL) as cluster, scratch_databases(*STORES, server=cluster.server) as dsns:
        accounts = a_calm_world(dsns, accounts=args.accounts)
        stripe_accounts = accounts[:args.stripe_accounts]
        legacy_accounts = accounts[args.stripe_accounts:]
        env = env_of(dsns, PYTHONUNBUFFERED="1", STRIPE_WEBHOOK_SECRET=SECRET,
                     **({"RECOMPUTE_BROKER_URL": url_broker} if url_broker else {}))
        if not args.snapshots:
            subprocess.run([*RECOMPUTE, "cdc", "setup"], env=env, capture_output=True, text=True, timeout=300,
                           check=True)
        timings = Path(tempfile.mkdtemp(prefix="load_follow_")) / "steps.jsonl"
        process = subprocess.Popen([*RECOMPUTE, "project", "--follow", "--port", "0", "--max-share", "1",
                                    "--step-timings", str(timings)], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            url = None
            while url is None:
                line = process.stdout.readline()
                if not line:
                    raise SystemExit(f"project did not start: {process.stderr.read()}")
                if found := re.search(r"serving on (http://\S+)", line):
                    url = found.group(1)
            threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
            announce_customers(url, stripe_accounts)
            with psycopg.connect(dsns["eventstore"]) as conn:
                while conn.execute("SELECT count(*) FROM read_model_state").fetchone()[0] < args.accounts:
                    time.sleep(0.5)
            time.sleep(3)  # the first pass settles
            print(f"legacy stores read {'by snapshot passes' if args.snapshots else 'through change streams'}; "
                  f"world: {args.accounts} accounts ({args.stripe_accounts} with Stripe); broker: "
                  f"{url_broker or 'none (events wait in the outbox)'}; load for {args.seconds:g}s: "
                  f"{args.rate:g} legacy changes/s + {args.webhooks:g} webhooks/s")
            stop = threading.Event()
            changes: list[Change] = []
            quiet: list[int] = []
            load_started = datetime.now(UTC)
            slices = [legacy_accounts[i::args.writers] for i in range(args.writers)]
            threads = [threading.Thread(target=legacy_writer,
                                        args=(dsns, mine, args.rate / args.writers, args.seconds, stop, changes,
                                              args.correcting, quiet)) for mine in slices]
            threads += [threading.Thread(target=webhook_sender,  # a POST takes ~20-40 ms here: a few senders
                                         args=(url, stripe_accounts[i::3], args.webhooks / 3, args.seconds, stop,
                                               changes)) for i in range(3)]
            spy = None
            if args.profile:
                spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid",
                                        str(process.pid), "--duration", str(int(args.seconds)), "--rate", "100",
                                        "--format", "raw", "--threads", "--nonblocking", "-o", args.profile],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            cpu_before = cpu_seconds(process.pid)
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            cpu_s = cpu_seconds(process.pid) - cpu_before
            if spy is not None:
                spy.wait(timeout=60)
            load_ended = datetime.now(UTC)
            elapsed = (load_ended - load_started).total_seconds()
            kinds = {k: sum(c.kind == k for c in changes) for k in ("legacy", "webhook")}
            legacy_all = kinds['legacy'] + len(quiet)
            print(f"sent: {legacy_all} legacy changes ({legacy_all / elapsed:.0f}/s; {kinds['legacy']} needing "
                  f"corrections), "
                  f"{kinds['webhook']} webhooks ({kinds['webhook'] / elapsed:.0f}/s) in {elapsed:.1f}s")
            time.sleep(20)  # let it drain
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=120)
        by_account = applied_since(dsns["eventstore"], load_started)
        every = lags(changes, by_account)
        if args.worst:
            print(worst(dsns["eventstore"], every, args.worst))
    print(f"to correction committed, p99/max s by 10 s of the load: {over_time(every, load_started)}")
    for kind in ("legacy", "webhook"):
        found = [lag for lag in every if lag.change.kind == kind]
        print(f"{kind}: to correction committed: {percentiles([x.committed for x in found if x.committed is not None])}")
        print(f"{kind}: to event published:      {percentiles([x.published for x in found if x.published is not None])}")
        print(f"{kind}: changes with no correction after them: {sum(x.committed is None for x in found)}")
    print(steps_summary(timings, load_started.timestamp(), load_ended.timestamp(), cpu_s))
    shutil.rmtree(timings.parent, ignore_errors=True)
    print(f"project --follow exited {code} on SIGTERM")
    return 0


if __name__ == "__main__":
    sys.exit(main())
