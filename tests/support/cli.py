"""`recompute` run as a process against configured stores, and whether it wrote anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from simulation.harness.secrets import leaked

ROOT = Path(__file__).resolve().parents[2]


def recompute(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    done = subprocess.run([sys.executable, "-c", "from recompute.cli import main; main()", *args],
                          env=full, capture_output=True, text=True, timeout=120)
    return no_secrets(done, full)


def no_secrets(done: subprocess.CompletedProcess, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Every run of the suite's runners: no DSN password, Stripe key, webhook secret or broker password
    in anything it printed."""
    shown = leaked(f"{done.stdout}\n{done.stderr}", env)
    assert not shown, f"recompute {' '.join(map(str, done.args[3:]))} printed the secret of {', '.join(shown)}"
    return done


def configured(stores) -> dict[str, str]:
    return {"RECOMPUTE_CF_PROD_DSN": stores["cf_prod"], "RECOMPUTE_BILLING_PROD_DSN": stores["billing_prod"],
            "RECOMPUTE_SUBS_DSN": stores["subs"], "RECOMPUTE_EVENTSTORE_DSN": stores["eventstore"]}


def nothing_written(eventstore: str) -> bool:
    """Not even our own tables were created."""
    with psycopg.connect(eventstore) as conn:
        return conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0
