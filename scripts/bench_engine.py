"""Issue 23's one benchmark: COPY, backfill, first plan, plan on an unchanged log, plan after 1% moved.

    .venv/bin/python scripts/bench_engine.py [--trees OLD NEW] [--sizes 10000 100000] [--big 300000]
                                             [--rounds 2] [--workers 2] [--moved 0.01]

Per fleet size (`--sizes`; give one size for a quick run), a fleet is built in scratch databases
(this checkout's simulation) and ingested ONCE with `recompute ingest` of the new tree (its Stripe
side served by the stand-in). Then, per round, the trees in alternating order on that one fleet and
event store (only the CLI is used, as scripts/compare_trees.py does: any two revisions compare):
  COPY            a binary COPY of the event table read fully by psycopg (the best of 3)
  backfill        each tree: `backfill --rules v2 --json --workers N` (a full replay under other
                  rules; the generations emptied before, else it would resume the last one)
then each tree in turn:
  reset           the kept projection emptied (read_model_facts: kept facts, decisions, results;
                  read_model_generation and what hangs off it), schemas untouched
  first plan      `plan --json --workers N` (folds every account's history, keeps the facts)
  unchanged plan  the same again on the unchanged log
  1% moved        two events appended to `--moved` of the accounts' streams (untimed)
  plan after      `plan --json --workers N` after that, timed alone
Prints per size each figure's median over the rounds per tree, COPY/backfill,
backfill/first plan, backfill/unchanged plan, backfill/plan after, and the peak RSS of each
command's main process and of each of its Dask workers (its process tree polled every 0.1 s;
VmHWM, so a peak between two polls counts), the largest over the rounds. With `--big N`: a fleet
of N built and ingested the same way, only backfills timed, and the time per account against the
largest of `--sizes`. Every phase says how long it took.

Exactness: the answers of every plan and backfill made on one state of the log (the log moves once
per tree and round) must be the same: the trees' backfills; first, unchanged, a plan after the move
and the next tree's first plan (corrections and backfill's changes, compared but for each drift's
`by` ref, which names the ingest's snapshot transactions). Exit 1 if not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_read_model import move_streams  # noqa: E402
from compare_trees import API_KEY, NOW, _stable, rules_v2  # noqa: E402

from domain.legacy_tables import STORES as LEGACY_STORES  # noqa: E402
from eventlog.account_log import EVENTS_TABLE  # noqa: E402
from simulation.fleet import build_fleet  # noqa: E402
from simulation.harness.databases import STORES, scratch_databases  # noqa: E402

STEPS = ("first plan", "unchanged plan", "backfill", "plan after moved")
KEPT_TABLES = ("read_model_facts", "read_model_generation")  # generation: partition and state cascade
DSN_VARIABLES = {"cf_prod": "RECOMPUTE_CF_PROD_DSN", "billing_prod": "RECOMPUTE_BILLING_PROD_DSN",
                 "subs": "RECOMPUTE_SUBS_DSN", "eventstore": "RECOMPUTE_EVENTSTORE_DSN"}


@dataclass
class Run:
    seconds: float
    stdout: str
    main_kb: int  # peak RSS of the command's own process
    workers_kb: list[int]  # peak RSS of each Dask worker process it started


def snapshot(tree: Path, into: Path) -> Path:
    """A copy of `tree`'s code, byte-compiled: the tree may move on during the run (a checkout others
    commit to), and where PYTHONDONTWRITEBYTECODE is set a tree without .pyc files would compile every
    module in every process (each Dask worker too) while the other does not."""
    copy = into / tree.name
    shutil.copytree(tree, copy, ignore=shutil.ignore_patterns(".*", "__pycache__", "*.egg-info", "tests", "docs"))
    packages = [p.name for p in copy.iterdir() if (p / "__init__.py").is_file()]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *packages], cwd=copy, check=True,
                   stdout=subprocess.DEVNULL)
    return copy


def commit_of(tree: Path) -> str:
    done = subprocess.run(["git", "-C", str(tree), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return done.stdout.strip() or "not a git checkout"


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def vmhwm_kb(pid: int) -> int:
    """A process's peak RSS so far (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return next((int(line.split()[1]) for line in status if line.startswith("VmHWM")), 0)
    except OSError:
        return 0


def role(process: psutil.Process) -> str:
    """'worker' for a Dask worker (a multiprocessing spawn child), else 'other' (the resource tracker...)."""
    try:
        return "worker" if "spawn_main" in " ".join(process.cmdline()) else "other"
    except psutil.Error:
        return "other"


def run_cli(tree: Path, env: dict[str, str], arguments: list[str]) -> Run:
    """`recompute ARGUMENTS` of `tree`, timed, its process tree's peak RSS polled every 0.1 s (beside it,
    so the time ends when the command does)."""
    command = [sys.executable, "-c", "from recompute.cli import main; main()", *arguments]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        child = subprocess.Popen(command, env={**env, "PYTHONPATH": str(tree)}, cwd=tree, stdout=out, stderr=err)
        peaks: dict[int, int] = {}
        roles: dict[int, str] = {child.pid: "main"}
        done = threading.Event()
        poller = threading.Thread(target=poll_peaks, args=(psutil.Process(child.pid), peaks, roles, done))
        poller.start()
        child.wait()
        seconds = time.perf_counter() - started
        done.set()
        poller.join()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if child.returncode != 0:
        raise SystemExit(f"{tree}: {' '.join(arguments[:1])} exited {child.returncode}: {stderr[-2000:]}")
    workers = sorted(kb for pid, kb in peaks.items() if roles[pid] == "worker")
    return Run(seconds, stdout, peaks.get(child.pid, 0), workers)


def poll_peaks(root: psutil.Process, peaks: dict[int, int], roles: dict[int, str], done: threading.Event) -> None:
    """Until `done`: each process of root's tree, its peak RSS so far."""
    while not done.wait(0.1):
        try:
            descendants = root.children(recursive=True)
        except psutil.Error:
            descendants = []
        for process in (root, *descendants):
            if process.pid not in roles:
                roles[process.pid] = role(process)
            peaks[process.pid] = max(peaks.get(process.pid, 0), vmhwm_kb(process.pid))


@contextmanager
def standin(world: Path) -> Iterator[str]:
    """The Stripe stand-in serving `world`; yields its base URL."""
    process = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "stripe_standin.py"), "--world", str(world),
                                "--api-key", API_KEY, "--port", "0"], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait()


@contextmanager
def ingested_fleet(accounts: int, ingest_tree: Path) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """A fleet of `accounts` in scratch databases, ingested by `ingest_tree`'s CLI; yields its DSNs and
    the environment the CLI runs in (no Stripe: nothing measured reads it)."""
    with scratch_databases(*STORES) as dsns, tempfile.TemporaryDirectory() as scratch:
        world = Path(scratch) / "stripe"
        started = time.perf_counter()
        build_fleet({s: dsns[s] for s in LEGACY_STORES}, accounts=accounts, seed=7, drifting=accounts * 691 // 10_000,
                    now=NOW, stripe_dir=world)
        print(f"{accounts:,} accounts: fleet built in {time.perf_counter() - started:.0f}s", flush=True)
        env = {**os.environ, **{DSN_VARIABLES[store]: dsn for store, dsn in dsns.items()}}
        started = time.perf_counter()
        with standin(world) as base:
            run_cli(ingest_tree, {**env, "STRIPE_API_KEY": API_KEY, "RECOMPUTE_STRIPE_API_BASE": base}, ["ingest"])
        print(f"{accounts:,} accounts: `recompute ingest` ({ingest_tree.name}) in {time.perf_counter() - started:.0f}s"
              f" ({load()})", flush=True)
        yield dsns, env


def log_events(eventstore: str) -> int:
    with psycopg.connect(eventstore) as conn:
        return conn.execute(f"SELECT count(*) FROM {EVENTS_TABLE}").fetchone()[0]


def copy_seconds(eventstore: str, tries: int = 3) -> float:
    """The binary COPY of the whole event table, read fully (and discarded) by psycopg: the best of `tries`."""
    best = float("inf")
    for _ in range(tries):
        started = time.perf_counter()
        with psycopg.connect(eventstore) as conn, conn.cursor() as cur:
            with cur.copy(f"COPY (SELECT * FROM {EVENTS_TABLE}) TO STDOUT (FORMAT BINARY)") as copy:
                for _chunk in copy:
                    pass
        best = min(best, time.perf_counter() - started)
    return best


def reset_kept(eventstore: str, tables: tuple[str, ...] = KEPT_TABLES) -> None:
    """Empties what a first plan (or a backfill, which would resume a built generation) must not find."""
    with psycopg.connect(eventstore) as conn:
        present = [t for t in tables if conn.execute("SELECT to_regclass(%s)", (t,)).fetchone()[0] is not None]
        if present:
            conn.execute(f"TRUNCATE {', '.join(present)} CASCADE")


def stable_plan(stdout: str) -> list[str]:
    return sorted(json.dumps(_stable(c), sort_keys=True) for c in json.loads(stdout)["corrections"])


def stable_backfill(stdout: str) -> list[str]:
    answer = json.loads(stdout)
    changes = sorted(json.dumps(c, sort_keys=True) for c in answer["against_active"]["changes"])
    return changes + stable_plan(json.dumps(answer["against_legacy"]))


@dataclass
class Answers:
    """What each plan and backfill answered, per state of the log: all must agree within a state."""
    accounts: int
    state: int = 0
    seen: dict[tuple[int, str], tuple[str, list[str]]] = field(default_factory=dict)
    compared: int = 0
    differ: list[str] = field(default_factory=list)

    def check(self, kind: str, who: str, answer: list[str]) -> None:
        first = self.seen.setdefault((self.state, kind), (who, answer))
        if first[0] != who:
            self.compared += 1
        if first[1] != answer:
            self.differ.append(f"{self.accounts:,} accounts, log state {self.state}: {kind} of {who} differs "
                               f"from {first[0]}'s")


def timed_backfill(tree: Path, env: dict[str, str], eventstore: str, rules: Path, workers: int) -> Run:
    reset_kept(eventstore, ("read_model_generation",))  # else it would resume the one built before
    return run_cli(tree, env, ["backfill", "--rules", str(rules), "--json", "--as-of", NOW.isoformat(),
                               "--workers", str(workers)])


def timed_plans(tree: Path, name: str, env: dict[str, str], dsns: dict[str, str], workers: int, moved: float,
                answers: Answers) -> dict[str, Run]:
    """First plan, unchanged plan, the move, plan after it; each plan's answer checked."""
    plan = ["plan", "--json", "--as-of", NOW.isoformat(), "--workers", str(workers)]
    reset_kept(dsns["eventstore"])
    runs = {"first plan": run_cli(tree, env, plan)}
    answers.check("plan", f"{name}'s first plan", stable_plan(runs["first plan"].stdout))
    runs["unchanged plan"] = run_cli(tree, env, plan)
    answers.check("plan", f"{name}'s unchanged plan", stable_plan(runs["unchanged plan"].stdout))
    move_streams(dsns, moved)
    answers.state += 1
    runs["plan after moved"] = run_cli(tree, env, plan)
    answers.check("plan", f"{name}'s plan after the move", stable_plan(runs["plan after moved"].stdout))
    return runs


def mb(kb: int) -> str:
    return f"{kb / 1024:.0f}"


def table(accounts: int, events: int, copy: float, results: dict[str, list[dict[str, Run]]]) -> dict[str, float]:
    """Prints one size's figures; returns each tree's median backfill seconds."""
    names = list(results)
    median = {n: {s: statistics.median(r[s].seconds for r in results[n]) for s in STEPS} for n in names}
    rows: list[tuple[str, list[str]]] = [("COPY (binary, best)", [f"{copy:.2f}s"] * len(names))]
    rows += [(step, [f"{median[n][step]:.2f}s" for n in names]) for step in STEPS]
    rows += [("COPY/backfill (>=0.15)", [f"{copy / median[n]['backfill']:.3f}" for n in names]),
             ("backfill/first plan (>=1)", [f"{median[n]['backfill'] / median[n]['first plan']:.2f}" for n in names]),
             ("backfill/unchanged (>=10)", [f"{median[n]['backfill'] / median[n]['unchanged plan']:.1f}"
                                            for n in names]),
             ("backfill/plan after moved", [f"{median[n]['backfill'] / median[n]['plan after moved']:.1f}"
                                            for n in names])]
    for step in ("first plan", "backfill"):
        rows.append((f"peak RSS MB {step}: main", [mb(max(r[step].main_kb for r in results[n])) for n in names]))
        rows.append((f"peak RSS MB {step}: workers", ["/".join(mb(max(kb)) for kb in zip(
            *(r[step].workers_kb for r in results[n]), strict=False)) or "-" for n in names]))
    print(f"\n{accounts:,} accounts, {events:,} events; medians of {len(results[names[0]])} rounds")
    print(f"{'':<31}" + "".join(f"{n:>14}" for n in names) + ("     new/old" if len(names) == 2 else ""))
    for label, cells in rows:
        ratio = ""
        if len(names) == 2 and label in STEPS:
            ratio = f"{median['new'][label] / median['old'][label]:>12.2f}"
        print(f"{label:<31}" + "".join(f"{c:>14}" for c in cells) + ratio)
    return {n: median[n]["backfill"] for n in names}


def bench_size(accounts: int, trees: dict[str, Path], rules: Path, args: argparse.Namespace,
               answers: Answers) -> dict[str, float]:
    size_started = time.perf_counter()
    answers.accounts, answers.state = accounts, 0
    answers.seen.clear()
    with ingested_fleet(accounts, trees[list(trees)[-1]]) as (dsns, env):
        results: dict[str, list[dict[str, Run]]] = {name: [] for name in trees}
        copies = []
        for round_ in range(args.rounds):
            copies.append(copy_seconds(dsns["eventstore"]))
            order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
            backfills = {}
            for name in order:  # first, so that every tree's backfill replays the same log
                backfills[name] = timed_backfill(trees[name], env, dsns["eventstore"], rules, args.workers)
                answers.check("backfill", name, stable_backfill(backfills[name].stdout))
            for name in order:
                started = time.perf_counter()
                runs = {**timed_plans(trees[name], name, env, dsns, args.workers, args.moved, answers),
                        "backfill": backfills[name]}
                results[name].append(runs)
                print(f"round {round_ + 1} {name}: COPY {copies[-1]:.2f}s, "
                      + ", ".join(f"{s} {runs[s].seconds:.2f}s" for s in STEPS)
                      + f" (plans {time.perf_counter() - started:.0f}s in all, {load()})", flush=True)
        backfills = table(accounts, log_events(dsns["eventstore"]), min(copies), results)
    print(f"{accounts:,} accounts: {time.perf_counter() - size_started:.0f}s in all\n", flush=True)
    return backfills


def bench_big(accounts: int, trees: dict[str, Path], rules: Path, args: argparse.Namespace,
              reference: tuple[int, dict[str, float]] | None, answers: Answers) -> None:
    """Only backfill, at a size where the whole table would take too long: its time per account."""
    size_started = time.perf_counter()
    answers.accounts, answers.state = accounts, 0
    answers.seen.clear()
    with ingested_fleet(accounts, trees[list(trees)[-1]]) as (dsns, env):
        seconds: dict[str, list[float]] = {name: [] for name in trees}
        for round_ in range(args.rounds):
            for name in (list(trees) if round_ % 2 == 0 else list(reversed(trees))):
                run = timed_backfill(trees[name], env, dsns["eventstore"], rules, args.workers)
                seconds[name].append(run.seconds)
                answers.check("backfill", name, stable_backfill(run.stdout))
                print(f"round {round_ + 1} {name}: backfill {run.seconds:.2f}s, peak RSS MB main {mb(run.main_kb)}, "
                      f"workers {'/'.join(mb(kb) for kb in run.workers_kb)} ({load()})", flush=True)
    for name in trees:
        per_account = statistics.median(seconds[name]) / accounts
        against = ""
        if reference is not None:
            size, backfills = reference
            against = f" = {per_account / (backfills[name] / size):.2f}x the {size:,} figure (target <= 1.10)"
        print(f"{accounts:,} accounts, backfill {name}: {statistics.median(seconds[name]):.1f}s = "
              f"{per_account * 1e6:.0f} µs/account{against}")
    print(f"{accounts:,} accounts: {time.perf_counter() - size_started:.0f}s in all", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", nargs=2, type=Path, metavar=("OLD", "NEW"))
    parser.add_argument("--sizes", nargs="*", type=int, default=[10_000, 100_000])
    parser.add_argument("--big", type=int, default=None, help="a size where only backfill is timed (e.g. 300000)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--moved", type=float, default=0.01, help="the share of streams moved before 'plan after'")
    args = parser.parse_args()
    given = {"old": args.trees[0].resolve(), "new": args.trees[1].resolve()} if args.trees else {"this": ROOT}
    answers = Answers(accounts=0)
    reference = None
    with tempfile.TemporaryDirectory() as scratch:
        trees = {name: snapshot(tree, Path(scratch) / name) for name, tree in given.items()}
        print(f"trees: {', '.join(f'{n} {t} ({commit_of(t)})' for n, t in given.items())}, copied and "
              f"byte-compiled; {args.workers} workers, {args.rounds} rounds; {os.cpu_count()} CPUs, {load()}",
              flush=True)
        rules = rules_v2(Path(scratch))
        for accounts in args.sizes:
            reference = (accounts, bench_size(accounts, trees, rules, args, answers))
        if args.big:
            bench_big(args.big, trees, rules, args, reference, answers)
    print(f"answers: {'the same' if not answers.differ else 'DIFFERENT'} within each log state "
          f"({answers.compared} compared with the first of their state)")
    for line in answers.differ:
        print(f"  {line}")
    return 1 if answers.differ else 0


if __name__ == "__main__":
    sys.exit(main())
