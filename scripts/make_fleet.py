#!/usr/bin/env python
"""Build a synthetic fleet into three legacy databases, a Stripe world directory and a manifest.

    .venv/bin/python scripts/make_fleet.py --accounts 10000 --seed 7 --drifting 691 \\
        --now 2026-03-01T00:00:00Z --cf-prod-dsn 'dbname=cf_prod' --billing-prod-dsn 'dbname=billing_prod' \\
        --subs-dsn 'dbname=subs' --stripe-dir /tmp/stripe --manifest /tmp/manifest.json

The databases must exist; their legacy tables are dropped and recreated.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from time import perf_counter

from simulation.fleet import build_fleet


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give an offset, e.g. 2026-03-01T00:00:00Z")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--drifting", type=int, required=True)
    parser.add_argument("--now", type=_instant, required=True, help="ISO 8601 instant with offset")
    parser.add_argument("--cf-prod-dsn", required=True)
    parser.add_argument("--billing-prod-dsn", required=True)
    parser.add_argument("--subs-dsn", required=True)
    parser.add_argument("--stripe-dir", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, required=True)
    args = parser.parse_args(argv)
    if not 0 <= args.drifting <= args.accounts:
        parser.error(f"--drifting {args.drifting}: must be between 0 and --accounts {args.accounts}")

    started = perf_counter()
    manifest = build_fleet(
        {"cf_prod": args.cf_prod_dsn, "billing_prod": args.billing_prod_dsn, "subs": args.subs_dsn},
        accounts=args.accounts, seed=args.seed, drifting=args.drifting, now=args.now,
        stripe_dir=args.stripe_dir, log=lambda msg: print(f"[{perf_counter() - started:6.1f}s] {msg}", flush=True),
    )
    manifest.save(args.manifest)
    print(f"[{perf_counter() - started:6.1f}s] manifest: {args.manifest} ({len(manifest.drifting_accounts)} "
          f"drifting accounts, {len(manifest.expected_corrections)} expected corrections)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
