"""A generated fleet on the real PostgreSQL, with its Stripe stand-in, ingested through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from simulation.fleet import build_fleet
from simulation.harness.databases import STORES, scratch_databases
from simulation.manifest import FleetManifest
from simulation.stripe_standin import StripeStandIn
from tests.support.cli import no_secrets

ROOT = Path(__file__).resolve().parents[2]
FLEET_NOW = datetime(2026, 3, 1, tzinfo=UTC)
API_KEY = "sk_test_fleet"


@dataclass(frozen=True)
class Fleet:
    dsns: dict[str, str]
    manifest: FleetManifest
    stripe_dir: Path
    env: dict[str, str]

    def recompute(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = no_secrets(subprocess.run([sys.executable, "-c", "from recompute.cli import main; main()", *args],
                                           env=self.env, capture_output=True, text=True, timeout=300), self.env)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    def plan_json(self, *args: str) -> dict:
        return json.loads(self.recompute("plan", "--json", "--as-of", FLEET_NOW.isoformat(), *args).stdout)


@contextmanager
def a_fleet(tmp_path: Path, *, accounts: int = 300, drifting: int = 40, seed: int = 11) -> Iterator[Fleet]:
    with scratch_databases(*STORES) as dsns:
        stripe_dir = tmp_path / "stripe"
        manifest = build_fleet(dsns, accounts=accounts, seed=seed, drifting=drifting, now=FLEET_NOW,
                               stripe_dir=stripe_dir)
        with StripeStandIn(stripe_dir, api_key=API_KEY) as stripe:
            env = {**os.environ, "PYTHONPATH": str(ROOT), "RECOMPUTE_CF_PROD_DSN": dsns["cf_prod"],
                   "RECOMPUTE_BILLING_PROD_DSN": dsns["billing_prod"], "RECOMPUTE_SUBS_DSN": dsns["subs"],
                   "RECOMPUTE_EVENTSTORE_DSN": dsns["eventstore"], "STRIPE_API_KEY": API_KEY,
                   "RECOMPUTE_STRIPE_API_BASE": stripe.base_url}
            fleet = Fleet(dsns=dsns, manifest=manifest, stripe_dir=stripe_dir, env=env)
            fleet.recompute("ingest")
            yield fleet
