"""`recompute demo --follow`: after the batch story, continuous projection on the same embedded stores.

Sets up the legacy stores' change streams (`cdc setup`: the embedded server gets `wal_level =
logical` and a restart), starts `recompute project --follow --port 0` as a child process (its
webhook receiver signed with DEMO_SECRET), then makes three things happen and shows each correction
arrive, with its lag from the cause to the correction committed (`correction_audit.settled_at`):

    webhook  a payment fails: Stripe's `invoice.payment_failed` for a new invoice of a calm account's
             customer, signed as Stripe signs, POSTed to the follower -> subs_invoice gets the invoice
             (a Stripe invoice alone is no billing invoice: it changes no dunning stage)
    drift    a legacy writer sets subs_dunning.stage of a calm account to 'retrying' -> put back to 'none'
    timer    an open invoice of a third account falls due DUE_IN seconds later -> at that instant the
             account's dunning stage goes 'none' -> 'grace' (nothing new is written at that instant:
             the follower's timer does it)

Each lag is also shown as the follower kept it for the report (`correction_audit.caused_at`: the
Stripe event's `created`, whole seconds; the legacy commit as its change stream tells it; the
timer's instant). Then SIGTERM: the follower finishes its batch and exits 0, and the demo's report
is written again, with its correction lag section. Whatever does not come within TIMEOUT is
one line and a False return (exit 1), never a hang.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import requests
import stripe

from domain.legacy_tables import STORES
from domain.partitions import PARTITIONS
from domain.rules import RULES_V1
from eventlog.stores import Error, Stores
from eventlog.tail import log_head
from ingestion.legacy.cdc.setup import setup_store
from recompute.embedded import embedded_dsns, ensure_logical_decoding

DEMO_SECRET = "whsec_recompute_demo"
TIMEOUT = 30.0  # seconds for each correction to arrive (and for the follower to start or stop)
DUE_IN = 5.0


class DemoFailed(Exception):
    """Something did not come in time: the line says what."""


def run_follow(data_dir: Path, *, say: Callable[[str], None]) -> bool:
    stores = Stores.from_dsns(embedded_dsns(data_dir))
    restarted = ensure_logical_decoding(data_dir)
    streams = [setup_store(store, stores) for store in STORES]
    say(f"\ncdc setup    {'wal_level = logical, the embedded server restarted; ' if restarted else ''}"
        f"{len(streams)} change streams ({', '.join(STORES)})")
    lags: list[str] = []
    with tempfile.TemporaryFile("w+") as errors:
        try:
            calm = _calm_accounts(stores, 3)
            with _Follower(data_dir, errors) as follower:
                say(f"follower     recompute project --follow --port 0 (pid {follower.process.pid}), "
                    f"serving on {follower.url}")
                say(f"             {follower.first_pass}")
                say(f"             caught up: every partition at the log's head ({_caught_up(stores):,} events)")
                lags.append(_webhook(stores, follower.url, calm[0], say))
                lags.append(_drift(stores, calm[1], say))
                lags.append(_timer(stores, calm[2], say))
                code = follower.stop()
        except (DemoFailed, Error, requests.RequestException, OSError) as failed:
            say(f"FAILED       {' '.join(str(failed).split())}")
            errors.seek(0)
            for line in errors.read().splitlines()[-5:]:
                say(f"             follower: {line}")
            return False
    say(f"stopped      SIGTERM: {follower.last_line}; exit {code}")
    from recompute.cli.report import write_report

    path = data_dir / "demo-report.html"
    size, _, _ = write_report(stores, RULES_V1, datetime.now(UTC), path)
    say(f"report       again, now with the correction lag ({size / 1024:,.0f} KiB): {path}")
    say(f"follow       3 corrections arrived ({', '.join(lags)}); the follower exited {code}")
    return code == 0


def _webhook(stores: Stores, url: str, account: str, say: Callable[[str], None]) -> str:
    with stores.connect("subs", purpose="demo") as conn:
        customer = conn.execute("SELECT stripe_customer_id FROM subs_customer WHERE account_id = %s ORDER BY id "
                                "LIMIT 1", (account,)).fetchone()[0]
    now = int(time.time())
    invoice_id = f"in_demo_{now}"
    invoice = {"id": invoice_id, "object": "invoice", "customer": customer, "status": "open", "created": now - 86_400,
               "amount_due": 2900, "amount_paid": 0, "currency": "usd", "attempt_count": 1,
               "due_date": now + 13 * 86_400, "status_transitions": {
                   "finalized_at": now - 86_400, "paid_at": None, "voided_at": None, "marked_uncollectible_at": None}}
    event = {"id": f"evt_demo_{now}", "object": "event", "api_version": "2025-03-31.basil", "created": now,
             "type": "invoice.payment_failed", "data": {"object": invoice}, "livemode": False, "pending_webhooks": 0,
             "request": {"id": None, "idempotency_key": None}}
    body = orjson.dumps(event)
    since, at = _last_audit(stores), datetime.now(UTC)
    answer = requests.post(f"{url}/webhooks/stripe", data=body, timeout=10, headers={
        "Stripe-Signature": stripe.WebhookSignature.generate_signature_header(body.decode(), DEMO_SECRET),
        "Content-Type": "application/json"})
    if answer.status_code != 200:
        raise DemoFailed(f"the webhook was refused: {answer.status_code} {answer.text[:80]}")
    say(f"\nwebhook      a payment fails: invoice.payment_failed of a new invoice {invoice_id} of {account}, "
        f"signed: {answer.status_code}")
    return _arrived(stores, account, since, at, "webhook", say)


def _drift(stores: Stores, account: str, say: Callable[[str], None]) -> str:
    since = _last_audit(stores)
    with stores.connect("subs", purpose="demo") as conn:
        conn.execute("UPDATE subs_dunning SET stage = 'retrying', updated_at = now() WHERE account_id = %s", (account,))
    at = datetime.now(UTC)
    say(f"\ndrift        a legacy writer sets subs.subs_dunning[{account}].stage 'none' -> 'retrying'")
    return _arrived(stores, account, since, at, "drift", say)


def _timer(stores: Stores, account: str, say: Callable[[str], None]) -> str:
    since = _last_audit(stores)
    due = datetime.now(UTC) + timedelta(seconds=DUE_IN)
    invoice_id = f"inv_demo_{int(due.timestamp())}"
    with stores.connect("billing_prod", purpose="demo") as conn:
        conn.execute("INSERT INTO invoices VALUES (%s, %s, NULL, 'open', 'usd', 2900, 0, %s, now(), now())",
                     (invoice_id, account, due))
    say(f"\ntimer        billing_prod.invoices[{invoice_id}] of {account}: open, due at {due:%H:%M:%S.%f}"[:-3]
        + f" ({DUE_IN:g} s from now)")
    _arrived(stores, account, since, datetime.now(UTC), "invoice", say, label="  written  ")
    return _arrived(stores, account, since, due, "timer", say, stage="grace", label="  at due   ")


def _arrived(stores: Stores, account: str, since: int, cause: datetime, what: str, say: Callable[[str], None],
             *, stage: str | None = None, label: str = "  corrected") -> str:
    """Waits for the account's applied corrections recorded after audit id `since` (one setting
    `stage`, when given) in a run that has finished, says them with the lag
    from `cause` to their commit and the follower's own, and returns the lag."""
    deadline = time.monotonic() + TIMEOUT + max(0.0, (cause - datetime.now(UTC)).total_seconds())
    query = ("SELECT tbl, key, col, from_value, to_value, settled_at, caused_at FROM correction_audit "
             "WHERE account_id = %s AND id > %s AND status = 'applied' AND run_id IN "
             "(SELECT run_id FROM apply_run WHERE finished_at IS NOT NULL)"
             + (" AND col = 'stage' AND to_value = %s" if stage else "") + " ORDER BY id")
    params = (account, since, orjson.dumps(stage).decode()) if stage else (account, since)
    while time.monotonic() < deadline:
        with stores.connect("eventstore", purpose="demo") as conn:
            rows = conn.execute(query, params).fetchall()
        if rows:
            table, key, column, old, new, *_ = rows[0]
            lag = (max(r[5] for r in rows) - cause).total_seconds()
            change = f".{column} {_shown(old)} -> {_shown(new)}" if column else " inserted (" + ", ".join(
                f"{k} {v}" for k, v in (new or {}).items() if k in ("status", "attempt_count")) + ")"
            more = f" (+{len(rows) - 1} more)" if len(rows) > 1 else ""
            kept = max(((r[5] - r[6]).total_seconds() for r in rows if r[6]), default=None)
            say(f"  {label.strip():<9}  {table}[{next(iter(key.values())) if key else account}]{change}{more}")
            say(f"             {lag:.2f} s after the {what} to the correction committed"
                + ("" if kept is None else f" (the follower's own lag, kept for the report: {kept:.2f} s)"))
            return f"{what} {lag:.2f} s"
        time.sleep(0.1)
    raise DemoFailed(f"no correction of {account} within {TIMEOUT:g} s of the {what}")


def _shown(value: object) -> str:
    """A value as the audit holds it, an instant as its time of day (the date is today's)."""
    if isinstance(value, str) and re.match(r"\d{4}-\d\d-\d\dT", value):
        return f"{datetime.fromisoformat(value):%H:%M:%S.%f}"[:-3]
    return repr(value)


def _caught_up(stores: Stores) -> int:
    """Waits until the follower has read the whole log (each partition's position at its head), so
    that what the demo does next is all each correction is caused by; returns the head."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        head = log_head(stores)
        with stores.connect("eventstore", purpose="demo") as conn:
            parts, low = conn.execute("SELECT count(*), min(position) FROM follow_position").fetchone()
        if parts == PARTITIONS and low >= head:
            return head
        time.sleep(0.2)
    raise DemoFailed(f"the follower did not catch up with the log within {TIMEOUT:g} s")


def _last_audit(stores: Stores) -> int:
    with stores.connect("eventstore", purpose="demo") as conn:
        return conn.execute("SELECT coalesce(max(id), 0) FROM correction_audit").fetchone()[0]


def _calm_accounts(stores: Stores, count: int) -> list[str]:
    """Accounts in good standing in both dunning tables (no invoice open and past due): each change
    the demo makes to one of them is the only thing that moves it."""
    with stores.connect("subs", purpose="demo") as conn:
        subs = {a for a, in conn.execute("SELECT d.account_id FROM subs_dunning d JOIN subs_customer c USING "
                                         "(account_id) WHERE d.stage = 'none'")}
    with stores.connect("billing_prod", purpose="demo") as conn:
        billing = {a for a, in conn.execute("SELECT account_id FROM dunning WHERE stage = 'none'")}
    chosen = sorted(subs & billing)[:count]
    if len(chosen) < count:
        raise DemoFailed(f"only {len(chosen)} accounts in good standing")
    return chosen


class _Follower:
    """`recompute project --follow --port 0` on the embedded default, its stdout read by a thread."""

    def __init__(self, data_dir: Path, errors) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RECOMPUTE_", "STRIPE_"))}
        env.update(RECOMPUTE_DATA_DIR=str(data_dir), STRIPE_WEBHOOK_SECRET=DEMO_SECRET, PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join(filter(None, (str(Path(__file__).resolve().parents[1]),
                                                            os.environ.get("PYTHONPATH")))))
        self.process = subprocess.Popen([sys.executable, "-c", "from recompute.cli import main; main()", "project",
                                         "--follow", "--port", "0"], env=env, stdout=subprocess.PIPE,
                                        stderr=errors, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.last_line = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str, what: str) -> str:
        deadline = time.monotonic() + TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise DemoFailed(f"the follower exited ({self.process.wait()}) before {what}")
            self.last_line = line
            if re.search(pattern, line):
                return line
        raise DemoFailed(f"no {what} from the follower within {TIMEOUT:g} s")

    def __enter__(self) -> _Follower:
        try:
            self.url = re.search(r"serving on (\S+)", self.wait_for(r"^serving on ", "serving line")).group(1)
            self.first_pass = self.wait_for(r"^\d+ partitions: ", "first pass").replace("32 partitions: ", "first pass: ")
        except DemoFailed:
            self.__exit__()
            raise
        return self

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.wait_for(r"^stopped: ", "stop after SIGTERM")
            return self.process.wait(timeout=TIMEOUT)
        except (DemoFailed, subprocess.TimeoutExpired):
            return self.process.poll() if self.process.poll() is not None else -1

    def __exit__(self, *_: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
