"""kill -9 of `recompute backfill [--apply]` at random points, on copies of one ingested fleet.

    trials = BackfillTrials(fleet, rules_file)      # runs both commands once, uninterrupted (their time, report)
    outcome = trials.run(apply=True, after_s=0.8)   # SIGKILL the command 0.8 s after it started
    outcome = trials.run(apply=True, after_switch_s=0.01)   # ... 10 ms after the active generation switched

After the kill: the active generation is the old one (none) or the new one fully built (every
partition, every account), never a mix; every legacy value changed so far is audited. Then the
same command again: it completes, reports what the uninterrupted run reported, and (with --apply)
the new rules are active, nothing is left to correct under them and no correction was applied twice.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import orjson
import psycopg

from simulation.harness.apply_fleet import NOW, RECOMPUTE, Fleet, snapshot
from simulation.harness.databases import STORES
from simulation.harness.kill_trials import _copies, _database, _legacy_changes, _unaudited


@dataclass
class BackfillOutcome:
    killed: bool
    active_after_kill: str  # "old", "new", or "MIX: ..." (a generation active while not fully built)
    legacy_changes: int
    unaudited: list
    rerun_matches: bool  # the rerun's report equals the uninterrupted run's
    active_after_rerun: str
    applied_twice: list
    left_over: int  # corrections `plan --rules FILE` still finds after the rerun (--apply)
    note: str = ""  # what the rerun said about resuming

    def ok(self, *, apply: bool) -> bool:
        return (not self.active_after_kill.startswith("MIX") and not self.unaudited and self.rerun_matches
                and not self.applied_twice and (not apply or (self.active_after_rerun == "new" and not self.left_over)))


class BackfillTrials:
    def __init__(self, fleet: Fleet, rules_file: Path, *, workers: int = 2) -> None:
        self.fleet, self.rules_file, self.workers = fleet, rules_file, workers
        self.templates = {store: _database(fleet.dsns[store]) for store in STORES}
        self.before = snapshot(fleet.dsns)
        self.reference: dict[bool, dict] = {}
        self.seconds: dict[bool, float] = {}
        for apply in (False, True):
            with self._copy() as dsns:
                started = time.perf_counter()
                self.reference[apply] = _report(self._run(dsns, apply))
                self.seconds[apply] = time.perf_counter() - started

    def run(self, *, apply: bool, after_s: float | None = None, after_switch_s: float | None = None,
            after_intents_s: float | None = None, rerun_plain_apply: bool = False) -> BackfillOutcome:
        """`rerun_plain_apply`: the rerun is `recompute apply --rules FILE --force` (under the new
        active rules) instead of the same backfill; its report is not compared."""
        with self._copy() as dsns:
            process = subprocess.Popen(self._command(apply), env=self._env(dsns), stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            if after_switch_s is not None:
                _wait_for_switch(dsns["eventstore"], process)
                time.sleep(after_switch_s)
            elif after_intents_s is not None:  # apply's intents are recorded: it is writing the stores
                _wait_for_intents(dsns["eventstore"], process)
                time.sleep(after_intents_s)
            else:
                time.sleep(after_s or 0)
            killed = process.poll() is None
            process.kill()
            process.wait()
            after_kill = _active(dsns["eventstore"])
            changes = _legacy_changes(self.before, snapshot(dsns))
            unaudited = _unaudited(dsns["eventstore"], changes) if changes else []
            rerun = self._run(dsns, apply, plain_apply=rerun_plain_apply)
            with psycopg.connect(dsns["eventstore"]) as conn:
                applied = conn.execute("SELECT tbl, key::text, col, to_value::text FROM correction_audit "
                                       "WHERE status = 'applied'").fetchall() if apply else []
            left = 0
            if apply:
                plan = subprocess.run([*RECOMPUTE, "plan", "--json", "--as-of", NOW.isoformat(), "--rules",
                                       str(self.rules_file), "--workers", "1"], env=self._env(dsns),
                                      capture_output=True, check=True)
                left = len(orjson.loads(plan.stdout)["corrections"])
            return BackfillOutcome(
                killed, after_kill, len(changes), unaudited,
                rerun_plain_apply or _report(rerun) == self.reference[apply],
                _active(dsns["eventstore"]), [c for c, n in Counter(applied).items() if n > 1], left,
                note="resumed" if "resumed" in rerun.stderr + rerun.stdout else "")

    def _run(self, dsns: dict[str, str], apply: bool, *, plain_apply: bool = False) -> subprocess.CompletedProcess:
        command = [*RECOMPUTE, "apply", "--rules", str(self.rules_file), "--as-of", NOW.isoformat(), "--force",
                   "--json"] if plain_apply else self._command(apply)
        done = subprocess.run(command, env=self._env(dsns), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return done

    def _command(self, apply: bool) -> list[str]:
        return [*RECOMPUTE, "backfill", "--rules", str(self.rules_file), "--as-of", NOW.isoformat(), "--json",
                "--workers", str(self.workers), *(["--apply", "--force"] if apply else [])]

    def _env(self, dsns: dict[str, str]) -> dict[str, str]:
        env = {**self.fleet.env(), "RECOMPUTE_CF_PROD_DSN": dsns["cf_prod"],
               "RECOMPUTE_BILLING_PROD_DSN": dsns["billing_prod"], "RECOMPUTE_SUBS_DSN": dsns["subs"],
               "RECOMPUTE_EVENTSTORE_DSN": dsns["eventstore"]}
        env.pop("RECOMPUTE_BROKER_URL", None)
        return env

    def _copy(self) -> _copies:
        return _copies(self.templates)


def _report(done: subprocess.CompletedProcess | dict) -> dict:
    """What a run reports that any run of the same rules at the same T must report alike."""
    document = orjson.loads(done.stdout) if isinstance(done, subprocess.CompletedProcess) else done
    return {k: document[k] for k in ("as_of", "rules_version", "accounts_checked", "events_replayed",
                                     "against_active", "against_legacy")}


def _active(eventstore_dsn: str) -> str:
    """old (none active), new (a fully built generation active), or MIX."""
    with psycopg.connect(eventstore_dsn) as conn:
        if conn.execute("SELECT to_regclass('read_model_generation')").fetchone()[0] is None:
            return "old"
        row = conn.execute(
            "SELECT g.id, g.built_at IS NOT NULL, g.partitions, (SELECT count(*) FROM read_model_partition p "
            "WHERE p.generation = g.id), (SELECT count(*) FROM read_model_state s WHERE s.generation = g.id), "
            "(SELECT sum(accounts) FROM read_model_partition p WHERE p.generation = g.id) "
            "FROM read_model_generation g WHERE g.active").fetchone()
    if row is None:
        return "old"
    gid, built, partitions, done, states, _ = row
    return "new" if built and done == partitions and states > 0 else f"MIX: generation {gid} {done}/{partitions}"


def _wait_for_switch(eventstore_dsn: str, process: subprocess.Popen) -> None:
    with psycopg.connect(eventstore_dsn, autocommit=True) as conn:
        while process.poll() is None and _active_id(conn) is None:
            time.sleep(0.002)


def _wait_for_intents(eventstore_dsn: str, process: subprocess.Popen) -> None:
    with psycopg.connect(eventstore_dsn, autocommit=True) as conn:
        while process.poll() is None and not conn.execute(
                "SELECT to_regclass('correction_audit') IS NOT NULL AND EXISTS (SELECT FROM correction_audit)"
        ).fetchone()[0]:
            time.sleep(0.002)


def _active_id(conn: psycopg.Connection) -> int | None:
    if conn.execute("SELECT to_regclass('read_model_generation')").fetchone()[0] is None:
        return None
    row = conn.execute("SELECT id FROM read_model_generation WHERE active").fetchone()
    return row[0] if row else None
