"""Issue 23's budget for `backfill` (0.15 of the binary COPY) against what a backfill pays on this
machine, and at most what each lever not taken could save.

    .venv/bin/python scripts/bench_levers.py [--accounts 10000] [--drifting 691] [--reuse]

On bench_backfill.py's fleet (the same databases, bench_backfill_<accounts>_*; --reuse keeps them),
in one run:
  budget        the binary COPY of the event table (best of 3) / 0.15: the most a backfill may take
  fixed         what every backfill pays before it reads an event: a fresh interpreter importing
                the command (`recompute backfill --help`, best of 3), and the Dask LocalCluster that
                the command starts, its 2 workers importing the engine (best of 2)
  reads alone   the backfill's reads (its 2 tasks' accounts: events, parked rows, every store's
                rows), nothing decoded, folded or written, on a started cluster (best of 2)
  client CPU    a whole backfill in this process (InlineExecutor, one task; `time.process_time`),
                per event of the log
  allowed       (budget - fixed) x 2 cores / events: the most client CPU an event may cost, were
                the reads free and the two workers busy all the time
Then the two levers of the issue that are not taken, each at its ceiling:
  latest observation per row   the events some rule reads (decoded today) that a later observation
                of the same row or Stripe object at or before T supersedes: what a server-side
                `DISTINCT ON` could leave out, at best (the rules need some of them: charges,
                same-second Stripe ordering, stage_since), by table, and what decoding and folding
                them costs now (measured: a fold of the streams with and without them)
  decoder       µs per decoded event: `decode_event` today (orjson, times parsed, the pydantic model
                built without validation), `orjson.loads` alone, msgspec decoding into Structs
                (times parsed, no dict, no model: what a fold reading Structs could save), and
                msgspec Structs made into today's models (what msgspec behind decode_event saves)
A benchmark, not a test: it prints figures and exits 0.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import orjson
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_backfill import NOW, copy_floor, reads_only  # noqa: E402
from bench_plan import ingested_fleet  # noqa: E402

from domain.events import StripeObjectObserved  # noqa: E402
from domain.facts import row_key  # noqa: E402
from domain.fold import fold, may_be_read_by_truth  # noqa: E402
from domain.rules import RULES_V1, parse_rules  # noqa: E402
from domain.trusted import trusted_dict  # noqa: E402
from eventlog.account_log import _event_class, decode_event  # noqa: E402
from eventlog.account_range import AccountRange  # noqa: E402
from eventlog.range_reads import truth_events  # noqa: E402
from eventlog.stores import Stores  # noqa: E402
from projections.executor import InlineExecutor  # noqa: E402
from projections.read_model.backfill import _jobs, backfill  # noqa: E402
from projections.read_model.generations import open_generation  # noqa: E402
from projections.read_model.tables import ensure_read_model  # noqa: E402
from recompute.dask_executor import DaskExecutor  # noqa: E402
from tests.e2e.test_backfill_fleet import RULES_V2  # noqa: E402

SHARE = 0.15  # the target: backfill at >= 0.15 of the COPY's speed
CORES = 2
SAMPLE = 1_000  # accounts whose decoded events the decoders are timed on


def best(runs: int, fn: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    """The least of `runs` timings of `fn` by `clock` (wall by default)."""
    times = []
    for _ in range(runs):
        started = clock()
        fn()
        times.append(clock() - started)
    return min(times)


def cpu_best(runs: int, fn: Callable[[], object]) -> float:
    return best(runs, fn, time.process_time)


def cli_import_seconds() -> float:
    command = [sys.executable, "-c", "from recompute.cli import main; main()", "backfill", "--help"]
    return best(3, lambda: subprocess.run(command, cwd=ROOT, check=True, capture_output=True))


def _import_engine() -> None:
    import projections.read_model.partition  # noqa: F401


def cluster_seconds() -> float:
    def start() -> None:
        with DaskExecutor(workers=CORES) as executor:
            executor.connect().run(_import_engine)
    return best(2, start)


def reads_seconds(dsns: dict[str, str], ids: list[tuple[str, ...]]) -> float:
    with DaskExecutor(workers=CORES) as executor:
        list(executor.map(reads_only, [(dsns, AccountRange(ids=i)) for i in ids]))  # the workers started, warm
        return best(2, lambda: list(executor.map(reads_only, [(dsns, AccountRange(ids=i)) for i in ids])))


def inline_backfill_cpu(stores: Stores) -> tuple[float, int]:
    """Client CPU of a whole backfill in this process (one task), and the events it replayed."""
    empty_generations(stores)
    started = time.process_time()
    result = backfill(stores, parse_rules(RULES_V2), RULES_V2, RULES_V1, NOW, executor=InlineExecutor(), now=NOW)
    return time.process_time() - started, result.events_replayed


def empty_generations(stores: Stores) -> None:
    with stores.connect(purpose="bench") as conn:
        if conn.execute("SELECT to_regclass('read_model_generation')").fetchone()[0] is not None:
            conn.execute("DELETE FROM read_model_generation")


def superseded(stores: Stores, as_of: datetime) -> tuple[Counter[str], Counter[str], list[tuple[str, list[Any], list[Any]]]]:
    """Per table, the decoded events at or before T, and those a later observation of the same row
    or object at or before T supersedes; with each account's decoded events and those left after
    dropping the superseded (for timing the fold both ways)."""
    decoded: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    streams = []
    for stream in truth_events(stores, AccountRange()):
        if stream.account_id.startswith("catalog"):
            continue
        latest: dict[tuple[str, Any], Any] = {}
        at_t = [e for e in stream.events if e.source_time <= as_of]
        for e in sorted(at_t, key=lambda e: (e.source_time, e.originator_version)):
            table = f"{e.store}.{e.table}"
            decoded[table] += 1
            key = e.object_id if isinstance(e, StripeObjectObserved) else row_key(e.key)
            dropped[table] += (table, key) in latest
            latest[(table, key)] = e
        streams.append((stream.account_id, at_t, list(latest.values())))
    return decoded, dropped, streams


def decoders(eventstore: str, accounts: int) -> tuple[int, float, float, float, float]:
    """µs per decoded event of decode_event, orjson.loads, msgspec Structs, and msgspec Structs
    made into the same models decode_event makes (equal to its, checked), on the events some rule
    reads of the first `accounts` accounts; the collector off while timing (a real reader holds
    one account's events at a time; these lists hold all of them)."""
    with psycopg.connect(eventstore) as conn:
        ids = [r[0] for r in conn.execute("SELECT DISTINCT originator_id FROM recompute_events "
                                          "WHERE originator_id LIKE 'acc%%' ORDER BY 1 LIMIT %s", (accounts,))]
        rows = conn.execute("SELECT originator_id, originator_version, topic, state FROM recompute_events "
                            "WHERE originator_id = ANY(%s)", (ids,)).fetchall()
    rows = [r for r in rows if may_be_read_by_truth(r[3])]
    # topic -> (model class, a decoder into a Struct of exactly its stored fields: the times parsed, the
    # rest as JSON gives them), made from the model's own fields
    as_models = {}
    for topic in {r[2] for r in rows}:
        cls, fields, times = _event_class(topic)
        stored = sorted(fields - {"originator_id", "originator_version"})
        as_models[topic] = (cls, msgspec.json.Decoder(msgspec.defstruct(
            f"{cls.__name__}Stored", [(n, datetime | None if n in times else Any) for n in stored],
            forbid_unknown_fields=True)))

    def structs() -> None:
        for _, _, topic, state in rows:
            as_models[topic][1].decode(state)

    def models() -> list[Any]:
        made = []
        for originator_id, version, topic, state in rows:
            cls, decoder = as_models[topic]
            data = msgspec.structs.asdict(decoder.decode(state))
            data["originator_id"], data["originator_version"] = originator_id, version
            made.append(trusted_dict(cls, data))
        return made

    if models() != [decode_event(t, s, o, v) for o, v, t, s in rows]:
        raise SystemExit("msgspec made other events than decode_event")
    per = 1e6 / len(rows)
    gc.collect()
    gc.disable()
    try:
        return (len(rows), cpu_best(5, lambda: [decode_event(t, s, o, v) for o, v, t, s in rows]) * per,
                cpu_best(5, lambda: [orjson.loads(s) for _, _, _, s in rows]) * per, cpu_best(5, structs) * per,
                cpu_best(5, models) * per)
    finally:
        gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--drifting", type=int, default=691)
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()
    dsns = ingested_fleet(args.accounts, args.drifting, reuse=args.reuse, prefix="bench_backfill")
    stores = Stores.from_dsns(dsns)
    with psycopg.connect(dsns["eventstore"]) as conn:
        events = conn.execute("SELECT count(*) FROM recompute_events").fetchone()[0]
    copy_s = min(copy_floor(dsns["eventstore"])[1] for _ in range(3))
    budget = copy_s / SHARE
    print(f"{args.accounts:,} accounts, {events:,} events; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"  binary COPY of the event table (best of 3)        {copy_s:7.2f} s")
    print(f"  budget: a backfill at {SHARE} of the COPY           {budget:7.2f} s")

    cli = cli_import_seconds()
    cluster = cluster_seconds()
    fixed = cli + cluster
    print(f"  fixed: the command's interpreter and imports      {cli:7.2f} s")
    print(f"  fixed: LocalCluster, {CORES} workers importing the engine {cluster:5.2f} s")
    empty_generations(stores)
    with stores.connect(purpose="bench") as conn:
        ensure_read_model(conn)  # a fleet no backfill has run on has none of its tables yet
        gen = open_generation(conn, parse_rules(RULES_V2), RULES_V2, NOW, 32, now=NOW).generation
    jobs = _jobs(stores, gen, parse_rules(RULES_V2), RULES_V1, 0, list(range(gen.partitions)), CORES)
    reads = reads_seconds(dsns, [job.account_ids for job in jobs])
    print(f"  reads alone, as the backfill's {CORES} tasks read them     {reads:7.2f} s  "
          f"(budget left after fixed and reads: {budget - fixed - reads:+.2f} s)")
    cpu, replayed = inline_backfill_cpu(stores)
    allowed = (budget - fixed) * CORES / events * 1e6
    print(f"  client CPU of a backfill in one process           {cpu:7.2f} s  = {cpu / replayed * 1e6:5.1f} µs an event")
    print(f"  allowed: (budget - fixed) x {CORES} cores / events       {allowed:7.1f} µs an event, reads free")
    print(f"  load while measuring: {os.getloadavg()[0]:.1f}")

    decoded, dropped, streams = superseded(stores, NOW)
    total, gone = sum(decoded.values()), sum(dropped.values())
    print(f"lever: latest observation per row: {gone:,} of the {total:,} decoded events at or before T are "
          f"superseded ({gone / total:.1%}; {gone / events:.1%} of the log)")
    for table, n in decoded.most_common():
        print(f"  {table:<26} {n:8,} decoded  {dropped[table]:8,} superseded ({dropped[table] / n:5.1%})")
    gc.collect()
    gc.disable()  # these lists hold every stream; a real reader holds one account's at a time
    whole = cpu_best(3, lambda: [fold(e, as_of=NOW, legacy=False) for _, e, _ in streams])
    latest = cpu_best(3, lambda: [fold(e, as_of=NOW, legacy=False) for _, _, e in streams])
    gc.enable()
    per_decoded = decoders(dsns["eventstore"], SAMPLE)
    decode_saved = gone * per_decoded[1] / 1e6
    print(f"  fold of every stream: {whole:.2f} s with them, {latest:.2f} s without; decoding them "
          f"{decode_saved:.2f} s: at most {(whole - latest + decode_saved) / cpu:.0%} of the client CPU")
    n, today, loads, structs, models = per_decoded
    print(f"lever: decoder without pydantic ({n:,} decoded events of {SAMPLE:,} accounts, best of 5, "
          "the collector off, µs an event):")
    print(f"  decode_event {today:5.2f}   orjson.loads alone {loads:5.2f}   msgspec Structs {structs:5.2f}"
          f"   msgspec Structs made into our models {models:5.2f}")
    print(f"  Structs the fold read instead of models would save at most {(today - structs) * total / 1e6:.2f} s = "
          f"{(today - structs) * total / 1e6 / cpu:.0%} of the client CPU; msgspec behind today's models "
          f"{(today - models) * total / 1e6:.2f} s = {(today - models) * total / 1e6 / cpu:.0%}")
    empty_generations(stores)


if __name__ == "__main__":
    main()
