"""`recompute` run as a process against configured stores, and whether it wrote anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]


def recompute(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from recompute.cli import main; main()", *args],
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True,
                          timeout=120)


def configured(stores) -> dict[str, str]:
    return {"RECOMPUTE_CF_PROD_DSN": stores["cf_prod"], "RECOMPUTE_BILLING_PROD_DSN": stores["billing_prod"],
            "RECOMPUTE_SUBS_DSN": stores["subs"], "RECOMPUTE_EVENTSTORE_DSN": stores["eventstore"]}


def nothing_written(eventstore: str) -> bool:
    """Not even our own tables were created."""
    with psycopg.connect(eventstore) as conn:
        return conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0
