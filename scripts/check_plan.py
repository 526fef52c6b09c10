"""Check: on a generated fleet, `recompute plan --json` lists exactly the drifting accounts and exactly
the corrections the fleet injected (its manifest), nothing more.

    .venv/bin/python scripts/check_plan.py [--accounts 10000] [--drifting 691] [--seed 7]

Builds the fleet in scratch databases on the local PostgreSQL (RECOMPUTE_TEST_PG), serves its Stripe
side from the stand-in in a separate process, runs the real `recompute ingest` and
`recompute plan --json --as-of <fleet now>`, compares, prints the result, and drops the databases.
Exit 0 when plan and manifest agree, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from domain.legacy_tables import STORES as LEGACY_STORES  # noqa: E402
from simulation.fleet import build_fleet  # noqa: E402
from simulation.harness.databases import STORES, scratch_databases  # noqa: E402
from simulation.oracle.expected_corrections import compare_corrections  # noqa: E402

NOW = datetime(2026, 3, 1, tzinfo=UTC)
API_KEY = "sk_test_check"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--drifting", type=int, default=691)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with scratch_databases(*STORES) as dsns, tempfile.TemporaryDirectory() as scratch:
        world = Path(scratch) / "stripe"
        started = time.perf_counter()
        manifest = build_fleet({s: dsns[s] for s in LEGACY_STORES}, accounts=args.accounts,
                               seed=args.seed, drifting=args.drifting, now=NOW, stripe_dir=world)
        print(f"fleet: {args.accounts} accounts, {len(manifest.drifting_accounts)} drifting, "
              f"{len(manifest.expected_corrections)} corrections injected ({time.perf_counter() - started:.0f}s)")
        standin = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "stripe_standin.py"), "--world", str(world),
                                    "--api-key", API_KEY, "--port", "0"], stdout=subprocess.PIPE, text=True)
        try:
            env = {**os.environ, "PYTHONPATH": str(ROOT), "RECOMPUTE_CF_PROD_DSN": dsns["cf_prod"],
                   "RECOMPUTE_BILLING_PROD_DSN": dsns["billing_prod"], "RECOMPUTE_SUBS_DSN": dsns["subs"],
                   "RECOMPUTE_EVENTSTORE_DSN": dsns["eventstore"], "STRIPE_API_KEY": API_KEY,
                   "RECOMPUTE_STRIPE_API_BASE": standin.stdout.readline().strip()}
            recompute = [sys.executable, "-c", "from recompute.cli import main; main()"]
            subprocess.run([*recompute, "ingest"], env=env, check=True)
            plan = json.loads(subprocess.run([*recompute, "plan", "--json", "--as-of", NOW.isoformat()], env=env,
                                             check=True, capture_output=True, text=True).stdout)
        finally:
            standin.terminate()
    accounts = sorted({c["account_id"] for c in plan["corrections"]})
    differences = compare_corrections(manifest.expected_corrections, plan["corrections"])
    print(f"plan: {plan['accounts_checked']} accounts checked, {plan['accounts_disagreeing']} disagreeing, "
          f"{len(plan['corrections'])} corrections")
    print(f"accounts: {'exactly the drifting ones' if accounts == manifest.drifting_accounts else 'DIFFERENT'}")
    print(f"corrections: {len(differences)} differences from the manifest")
    for line in differences[:20]:
        print(f"  {line}")
    return 0 if accounts == manifest.drifting_accounts and not differences else 1


if __name__ == "__main__":
    sys.exit(main())
