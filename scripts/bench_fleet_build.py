#!/usr/bin/env python
"""Build a fleet into scratch databases and print its build time, the process's peak RSS and a digest
of what it built (issue 23: building must not hold the whole fleet in memory).

    flock /tmp/bench.lock .venv/bin/python scripts/bench_fleet_build.py --accounts 10000

The digest is sha256 over each legacy table's rows (as text, sorted), each Stripe world file and the
manifest: two builds of the same (accounts, seed, drifting, now) must print the same digests.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulation.fleet import CHUNK, build_fleet  # noqa: E402
from simulation.harness.databases import scratch_databases  # noqa: E402
from simulation.legacy_schema import LEGACY_COLUMNS  # noqa: E402

NOW = datetime(2026, 3, 1, tzinfo=UTC)
STORES = tuple(LEGACY_COLUMNS)


def vmhwm_mb(pid: int | str = "self") -> float:
    """A process's peak resident set so far, in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def table_digest(dsn: str, table: str) -> str:
    digest = hashlib.sha256()
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY (SELECT t::text FROM {table} t ORDER BY 1) TO STDOUT") as copy:
            for chunk in copy:
                digest.update(chunk)
    return digest.hexdigest()[:16]


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()[:16]


def standin_mb(world: Path) -> float:
    """The peak RSS of scripts/stripe_standin.py once it has loaded `world` and is serving."""
    process = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "stripe_standin.py"), "--world", str(world),
                                "--api-key", "sk_test_bench"], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert process.stdout is not None
        process.stdout.readline()
        return vmhwm_mb(process.pid)
    finally:
        process.terminate()
        process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--drifting", type=int, help="default: accounts * 691 // 10,000 (as bench_engine)")
    parser.add_argument("--chunk", type=int, default=CHUNK, help=f"accounts built at a time (default {CHUNK:,})")
    parser.add_argument("--no-digest", action="store_true", help="skip the digests (large fleets)")
    parser.add_argument("--standin", action="store_true", help="also: the Stripe stand-in's peak RSS serving it")
    args = parser.parse_args()
    drifting = args.accounts * 691 // 10_000 if args.drifting is None else args.drifting
    with scratch_databases(*STORES) as dsns, tempfile.TemporaryDirectory() as scratch:
        world = Path(scratch) / "stripe"
        started = time.perf_counter()
        manifest = build_fleet(dsns, accounts=args.accounts, seed=args.seed, drifting=drifting, now=NOW,
                               stripe_dir=world, chunk=args.chunk)
        seconds = time.perf_counter() - started
        print(f"{args.accounts:,} accounts ({drifting} drifting, chunks of {args.chunk:,}): built in {seconds:.1f}s, "
              f"peak RSS {vmhwm_mb():.0f} MB", flush=True)
        if args.standin:
            print(f"  Stripe stand-in serving it: peak RSS {standin_mb(world):.0f} MB", flush=True)
        if args.no_digest:
            return 0
        manifest.save(Path(scratch) / "manifest.json")
        print(f"  manifest.json {file_digest(Path(scratch) / 'manifest.json')}")
        for path in sorted(world.iterdir()):
            print(f"  stripe/{path.name} {file_digest(path)}")
        for store, tables in LEGACY_COLUMNS.items():
            for table in tables:
                print(f"  {store}.{table} {table_digest(dsns[store], table)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
