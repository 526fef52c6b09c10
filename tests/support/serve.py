"""A real `recompute serve` process on a free loopback port, for tests and the load script."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import stripe

from tests.support.processes import terminate

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_test_recompute"


@dataclass
class Served:
    url: str
    port: int
    process: subprocess.Popen


def serve_env(stores: dict[str, str], **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
           "RECOMPUTE_CF_PROD_DSN": stores["cf_prod"], "RECOMPUTE_BILLING_PROD_DSN": stores["billing_prod"],
           "RECOMPUTE_SUBS_DSN": stores["subs"], "RECOMPUTE_EVENTSTORE_DSN": stores["eventstore"],
           "STRIPE_WEBHOOK_SECRET": SECRET, **extra}
    return {k: v for k, v in env.items() if v != ""}  # extra "" unsets a variable


def recompute_command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from recompute.cli import main; main()", *args]


@contextmanager
def served(env: dict[str, str], *args: str, stderr=subprocess.DEVNULL) -> Iterator[Served]:
    """Starts `recompute serve --port 0 ARGS`, waits for its `serving on http://H:P` line, and stops
    it with SIGTERM after (the exit code is left in `process.returncode`)."""
    process = subprocess.Popen(recompute_command("serve", "--port", "0", *args), env=env,
                               stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        line = process.stdout.readline()
        found = re.search(r"serving on (http://[^:]+:(\d+))", line)
        if not found:
            process.kill()
            raise RuntimeError(f"recompute serve did not start: {line!r} (exit {process.wait()})")
        yield Served(url=found.group(1), port=int(found.group(2)), process=process)
    finally:
        terminate(process)
        process.stdout.close()


def signed(body: bytes, secret: str = SECRET) -> str:
    """A `Stripe-Signature` header for the body, as Stripe signs it."""
    return stripe.WebhookSignature.generate_signature_header(body.decode(), secret)
