"""A small world at the real now, for `project`: accounts that agree everywhere, and changes to them.

    a_calm_world(dsns, accounts=10)   acc_000001.. on plan pro (api, sso), every legacy row agreeing
    an_overdue_invoice(dsns, account, days=5)   an open invoice due `days` ago (retrying under v1)
    with following(dsns, *args) as process      `project --follow --lease 2` until stop(process); its
                                                stderr in process.log_lines as it comes
    eventually(check, within=60, what=...)      check() polled until it is truthy
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from tests.support.cli import no_secrets
from tests.support.legacy import create_stores, execute

ROOT = Path(__file__).resolve().parents[2]
RECOMPUTE = [sys.executable, "-c", "from recompute.cli import main; main()"]


def account_id(n: int) -> str:
    return f"acc_{n:06d}"


def a_calm_world(dsns: dict[str, str], accounts: int = 10) -> list[str]:
    create_stores(dsns)
    now = datetime.now(UTC) - timedelta(minutes=5)
    ids = [account_id(n) for n in range(1, accounts + 1)]
    with psycopg.connect(dsns["cf_prod"]) as conn:
        conn.execute("INSERT INTO product_config VALUES ('pro', 'api'), ('pro', 'sso'), ('free', 'api')")
        for a in ids:
            conn.execute("INSERT INTO accounts VALUES (%s, 'Acme', 'pro', 'active', %s, %s)", (a, now, now))
            for feature in ("api", "sso"):
                conn.execute("INSERT INTO entitlements VALUES (%s, %s, true, 'plan', %s)", (a, feature, now))
    with psycopg.connect(dsns["subs"]) as conn:
        for a in ids:
            conn.execute("INSERT INTO subs_account (account_id, billing_email, country, currency, payment_method, "
                         "bad_debt, delinquent, updated_at) VALUES (%s, 'a@b.c', 'US', 'usd', 'card', false, false, %s)",
                         (a, now))
    return ids


def an_overdue_invoice(dsns: dict[str, str], account: str, *, days: float = 5, seconds: float = 0,
                       invoice_id: str | None = None) -> str:
    """An open invoice whose due_at is `days` (+ `seconds`) before now: written now, as its owners would."""
    invoice_id = invoice_id or f"inv_{account[4:]}_{int(datetime.now(UTC).timestamp() * 1000) % 10**9}"
    due = datetime.now(UTC) - timedelta(days=days, seconds=seconds)
    execute(dsns["billing_prod"], "INSERT INTO invoices VALUES (%s, %s, NULL, 'open', 'usd', 2900, 0, %s, now(), "
            "now())", (invoice_id, account, due))
    return invoice_id


def env_of(dsns: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECOMPUTE_", "STRIPE_"))}
    env.update(PYTHONPATH=str(ROOT), RECOMPUTE_CF_PROD_DSN=dsns["cf_prod"], RECOMPUTE_SUBS_DSN=dsns["subs"],
               RECOMPUTE_BILLING_PROD_DSN=dsns["billing_prod"], RECOMPUTE_EVENTSTORE_DSN=dsns["eventstore"], **extra)
    return env


def project(dsns: dict[str, str], *args: str, expect: int = 0, **env: str) -> subprocess.CompletedProcess:
    done = no_secrets(subprocess.run([*RECOMPUTE, "project", *args], env=env_of(dsns, **env), capture_output=True,
                                     text=True, timeout=120), env_of(dsns, **env))
    assert done.returncode == expect, f"project {' '.join(args)}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    return done


def dunning_stage(dsns: dict[str, str], account: str) -> str | None:
    with psycopg.connect(dsns["billing_prod"]) as conn:
        row = conn.execute("SELECT stage FROM dunning WHERE account_id = %s", (account,)).fetchone()
    return row and row[0]


def applied(dsns: dict[str, str]) -> list[tuple]:
    """(account, table, key, column, to) of every applied correction, in order."""
    with psycopg.connect(dsns["eventstore"]) as conn:
        return conn.execute("SELECT account_id, tbl, key::text, col, to_value::text FROM correction_audit "
                            "WHERE status = 'applied' ORDER BY id").fetchall()


def eventually(check: Callable[[], object], *, within: float = 60.0, what: str = "") -> object:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    raise AssertionError(f"not within {within:g}s: {what}")


@contextmanager
def following(dsns, *args: str, **env: str) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen([*RECOMPUTE, "project", "--follow", "--lease", "2", *args],
                               env=env_of(dsns, PYTHONUNBUFFERED="1", **env), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    drain = None
    try:
        first = process.stdout.readline()
        assert first.startswith("projection: generation"), first + process.stderr.read()
        lines: list[str] = []  # its stderr, drained as it comes so a chatty process never blocks on the pipe
        process.log_lines = lines  # type: ignore[attr-defined]
        drain = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")), daemon=True)
        drain.start()
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if drain is not None:
            drain.join(timeout=10)
        process.stdout.close()
        process.stderr.close()


def stop(process: subprocess.Popen) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=60)
    return code, process.stdout.read()
