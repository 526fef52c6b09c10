"""Kill trials of a change-stream reader: `kill -9` at random points while a writer commits, restart,
and check that every write is in the log exactly once.

    .venv/bin/python scripts/cdc_kill_trials.py [--kills 20] [--rate 200]

A writer process inserts billing_prod.charges rows (one per transaction) at --rate per second; a
reader process runs `LegacyChangeStream.poll` in a loop and is SIGKILLed after a random 0.2-1.5 s,
then started again, --kills times (a kill lands anywhere: mid-read, mid-transaction of the event
store, between its commit and the slot's confirmation). At the end one reader catches up and the
log must hold each charge once. Databases `bench_cdc_kill_billing_prod`, `bench_cdc_kill_eventstore`
(RECOMPUTE_TEST_PG), made fresh; the slot is dropped at the end, also on failure.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eventlog.own_tables import ensure_own_schema  # noqa: E402
from eventlog.stores import Stores  # noqa: E402
from ingestion.legacy.cdc.setup import drop_store, setup_store  # noqa: E402
from ingestion.legacy.cdc.stream import LegacyChangeStream  # noqa: E402
from simulation.harness.databases import named_database  # noqa: E402
from simulation.legacy_schema import create_legacy_schema  # noqa: E402

READER = """
import sys
from eventlog.stores import Stores
from ingestion.legacy.cdc.stream import LegacyChangeStream
stores = Stores(cf_prod="", billing_prod=sys.argv[1], subs="", eventstore=sys.argv[2])
stream = LegacyChangeStream(store="billing_prod", stores=stores)
while True:
    stream.poll(0.1)
"""


def writer(dsn: str, rate: float, stop, written) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        start, n = time.perf_counter(), 0
        while not stop.is_set():
            if n > (time.perf_counter() - start) * rate:
                time.sleep(0.001)
                continue
            conn.execute("INSERT INTO charges VALUES (%s, 'acc_000001', NULL, NULL, 100, 'succeeded', NULL, now())",
                         (f"ch_{n:07d}",))
            n += 1
        written.value = n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    legacy, _ = named_database("bench_cdc_kill_billing_prod")
    eventstore, _ = named_database("bench_cdc_kill_eventstore")
    with psycopg.connect(legacy) as conn:
        create_legacy_schema(conn, "billing_prod")
    ensure_own_schema(eventstore)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    stores = Stores(cf_prod="", billing_prod=legacy, subs="", eventstore=eventstore)  # the one store streamed
    try:
        setup_store("billing_prod", stores)
        stop, written = multiprocessing.Event(), multiprocessing.Value("l", 0)
        proc = multiprocessing.Process(target=writer, args=(legacy, args.rate, stop, written))
        proc.start()
        for _ in range(args.kills):
            reader = subprocess.Popen([sys.executable, "-c", READER, legacy, eventstore], env=env)
            time.sleep(rng.uniform(0.2, 1.5))
            reader.send_signal(signal.SIGKILL)
            reader.wait()
            for _ in range(100):  # the server lets go of the slot when it notices the reader is gone
                with psycopg.connect(legacy) as conn:
                    if not conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name LIKE "
                                        "'recompute_bench_cdc_kill%'").fetchone()[0]:
                        break
                time.sleep(0.05)
        stop.set()
        proc.join()
        with LegacyChangeStream(store="billing_prod", stores=stores) as stream:
            stream.catch_up()
        with psycopg.connect(eventstore) as conn:
            counts = conn.execute(
                "SELECT count(*), count(DISTINCT convert_from(state, 'UTF8')::jsonb -> 'key' ->> 'charge_id') "
                "FROM recompute_events").fetchone()
        events, distinct = counts
        ok = events == distinct == written.value
        print(f"{args.kills} kills of the reader while {written.value} single-row transactions were written: "
              f"{events} events, {distinct} distinct charges: {'each write once' if ok else 'MISMATCH'}")
        if not ok:
            sys.exit(1)
    finally:
        drop_store("billing_prod", stores)


if __name__ == "__main__":
    main()
