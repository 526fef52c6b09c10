"""kill -9 of `apply` at chosen points, on copies of one ingested fleet, and what must hold after.

    trials = KillTrials(fleet)            # measures an uninterrupted run once (its steps, its corrections)
    outcome = trials.run(step=17)         # SIGKILL at the 17th step of the protocol (applier's on_step)
    outcome = trials.run(after_s=0.02)    # SIGKILL the `recompute apply` command 20 ms after its
                                          # intents are recorded (it is then writing the stores)
    KillTrials(fleet, applier=...)        # another way in to the protocol (`apply --plan`'s apply_saved)

Each trial copies the fleet's four databases (CREATE DATABASE ... TEMPLATE), kills an apply on the
copy, checks that every legacy change made so far has its audit record and outbox event, reruns
`apply`, and checks that the job is finished with every correction applied exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import psycopg
from psycopg import sql

from domain.rules import RULES_V1
from eventlog.stores import Stores
from projections.apply.protocol import ApplyOptions, ApplyResult, apply
from projections.plan import plan
from simulation.harness.apply_fleet import KEYS, NOW, RECOMPUTE, Fleet, snapshot
from simulation.harness.databases import STORES, dsn_for

WRITTEN = {"updated_at", "stage_since", "source"}
Applier = Callable[[dict[str, str], Callable[[str], None]], ApplyResult]  # (dsns, on_step): one run of the protocol


def apply_all(dsns: dict[str, str], on_step: Callable[[str], None]) -> ApplyResult:
    return apply(Stores.from_dsns(dsns), RULES_V1, NOW, ApplyOptions(force=True, workers=1), on_step=on_step)


@dataclass
class TrialOutcome:
    killed: bool
    legacy_changes: int  # legacy values changed by the killed run
    unaudited: list  # legacy changes without a pending/applied audit row and a held/ready event
    recovered: Counter  # what the rerun's recovery found
    applied_total: int  # applied audit rows after the rerun
    applied_twice: list  # corrections applied more than once
    left_over: int  # corrections still planned after the rerun
    pending_or_held: int  # audit rows still pending or events still held after the rerun

    @property
    def ok(self) -> bool:
        return not self.unaudited and not self.applied_twice and not self.left_over and not self.pending_or_held


class KillTrials:
    def __init__(self, fleet: Fleet, applier: Applier = apply_all) -> None:
        self.fleet = fleet
        self.applier = applier
        self.templates = {store: _database(fleet.dsns[store]) for store in STORES}
        self.before = snapshot(fleet.dsns)
        self.expected = len(plan(Stores.from_dsns(fleet.dsns), RULES_V1, NOW, workers=1).corrections)
        with self._copy() as dsns:
            steps: list[str] = []
            self.applier(dsns, steps.append)
        self.steps = steps

    def run(self, *, step: int | None = None, after_s: float | None = None) -> TrialOutcome:
        with self._copy() as dsns:
            killed = self._kill_at_step(dsns, step) if step is not None else self._kill_after(dsns, after_s or 0)
            changes = _legacy_changes(self.before, snapshot(dsns))
            unaudited = _unaudited(dsns["eventstore"], changes)
            result = self.applier(dsns, lambda _: None)
            with psycopg.connect(dsns["eventstore"]) as conn:
                applied = conn.execute("SELECT tbl, key::text, col, to_value::text FROM correction_audit "
                                       "WHERE status = 'applied'").fetchall()
                stuck = conn.execute("SELECT (SELECT count(*) FROM correction_audit WHERE status = 'pending') + "
                                     "(SELECT count(*) FROM outbox_event WHERE status = 'held')").fetchone()[0]
            twice = [c for c, n in Counter(applied).items() if n > 1]
            left = len(plan(Stores.from_dsns(dsns), RULES_V1, NOW, workers=1).corrections)
            return TrialOutcome(killed, len(changes), unaudited, result.recovered, len(applied), twice, left, stuck)

    def _kill_at_step(self, dsns: dict[str, str], step: int) -> bool:
        """Forks a child that runs apply and SIGKILLs itself when the protocol reaches `step`."""
        pid = os.fork()
        if pid == 0:  # the child: never returns into the caller's stack
            try:
                seen = 0

                def on_step(_: str) -> None:
                    nonlocal seen
                    seen += 1
                    if seen == step:
                        os.kill(os.getpid(), signal.SIGKILL)

                self.applier(dsns, on_step)
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL

    def _kill_after(self, dsns: dict[str, str], seconds: float) -> bool:
        env = {**self.fleet.env(), "RECOMPUTE_CF_PROD_DSN": dsns["cf_prod"],
               "RECOMPUTE_BILLING_PROD_DSN": dsns["billing_prod"], "RECOMPUTE_SUBS_DSN": dsns["subs"],
               "RECOMPUTE_EVENTSTORE_DSN": dsns["eventstore"]}
        env.pop("RECOMPUTE_BROKER_URL", None)
        process = subprocess.Popen([*RECOMPUTE, "apply", "--force", "--as-of", NOW.isoformat()], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with psycopg.connect(dsns["eventstore"], autocommit=True) as conn:
            while process.poll() is None and not conn.execute(
                    "SELECT to_regclass('correction_audit') IS NOT NULL AND EXISTS (SELECT FROM correction_audit)"
            ).fetchone()[0]:
                time.sleep(0.002)
        time.sleep(seconds)
        killed = process.poll() is None
        process.kill()
        process.wait()
        return killed

    def _copy(self):
        return _copies(self.templates)


class _copies:
    """Fresh copies of the template databases, dropped afterwards."""

    def __init__(self, templates: dict[str, str]) -> None:
        self.names = {store: f"kt_{uuid.uuid4().hex[:10]}_{store}" for store in templates}
        self.templates = templates

    def __enter__(self) -> dict[str, str]:
        with psycopg.connect(dsn_for("postgres"), autocommit=True) as admin:
            for store, name in self.names.items():
                admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(self.templates[store])))
        return {store: dsn_for(name) for store, name in self.names.items()}

    def __exit__(self, *_exc) -> None:
        with psycopg.connect(dsn_for("postgres"), autocommit=True) as admin:
            for name in self.names.values():
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _database(dsn: str) -> str:
    return psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]


def _legacy_changes(before: dict, after: dict) -> list[tuple]:
    """(table, key, column or op, value) of every legacy value that differs, bookkeeping columns aside."""
    found = []
    for table in before:
        short = table.split(".", 1)[1]
        for key in before[table].keys() | after[table].keys():
            old, new = before[table].get(key), after[table].get(key)
            if old == new:
                continue
            if old is None or new is None:
                row = orjson.loads(new or old)
                found.append((table, key, "insert" if old is None else "delete", row))
                continue
            old_row, new_row = orjson.loads(old), orjson.loads(new)
            found += [(table, key, column, new_row[column]) for column in new_row
                      if column not in WRITTEN and old_row[column] != new_row[column]]
            assert tuple(new_row[k] for k in KEYS[short]) == key
    return found


def _unaudited(eventstore_dsn: str, changes: list[tuple]) -> list[tuple]:
    """The legacy changes no pending/applied audit row (with a held/ready/sent event) accounts for."""
    with psycopg.connect(eventstore_dsn) as conn:
        rows = conn.execute(
            "SELECT a.tbl, a.op, a.key, a.col, a.to_value FROM correction_audit a JOIN outbox_event e USING (event_id) "
            "WHERE a.status IN ('pending', 'applied') AND e.status IN ('held', 'ready', 'sent')").fetchall()
    updates, inserts, deletes = set(), [], set()
    for table, op, key, column, to in rows:
        short = table.split(".", 1)[1]
        if op == "update":
            updates.add((table, tuple(key[k] for k in KEYS[short]), column, orjson.dumps(to)))
        elif op == "insert":
            inserts.append((table, to))
        else:
            deletes.add((table, tuple(key[k] for k in KEYS[short])))
    missing = []
    for table, key, what, value in changes:
        if what == "insert":
            covered = any(t == table and all(value.get(k) == v for k, v in to.items()) for t, to in inserts)
        elif what == "delete":
            covered = (table, key) in deletes
        else:
            covered = (table, key, what, orjson.dumps(value)) in updates
        if not covered:
            missing.append((table, key, what, value))
    return missing
