"""The story fleet (simulation/drift_stories.py) played on the real PostgreSQL in real time, through the CLI.

Each phase's writes commit at their instant (the clock is waited for), so snapshots, which time a
row by its `updated_at`, and change streams, which time it by its commit, see the same history.
`how="snapshot"` ingests the stores by snapshot after each phase; `how="stream"` sets up each
store's change stream first and ingests from it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import psycopg

from simulation.drift_stories import StoryFleet, Write, story_fleet, write
from simulation.harness.databases import SERVER, STORES, scratch_databases
from simulation.legacy_schema import create_legacy_schema
from simulation.stripe_standin import StripeStandIn
from tests.support.cli import configured, recompute

API_KEY = "sk_test_stories"


@dataclass(frozen=True)
class PlayedFleet:
    fleet: StoryFleet
    plan: dict  # plan --json at T
    at: datetime  # T
    env: dict[str, str]
    dsns: dict[str, str]
    how: str
    committed: dict[datetime, tuple[datetime, datetime]]  # a phase's instant -> when its writes committed

    def recompute(self, *args: str) -> str:
        return _run(*args, env=self.env)


def _run(*args: str, env: dict[str, str]) -> str:
    result = recompute(*args, env=env)
    assert result.returncode == 0, f"recompute {' '.join(args)}: {result.stderr}"
    return result.stdout


def _wait_until(at: datetime) -> None:
    delay = (at - datetime.now(UTC)).total_seconds()
    if delay > 0:
        time.sleep(delay)


def _commit(dsns: dict[str, str], writes: list[Write]) -> tuple[datetime, datetime]:
    """One transaction per store, in STORES order; returns when the commits began and ended (a
    change stream times each write by its commit: within that window)."""
    began = datetime.now(UTC)
    for store in ("cf_prod", "billing_prod", "subs"):
        mine = [w for w in writes if w[0] == store]
        if mine:
            with psycopg.connect(dsns[store]) as conn:
                write(conn, mine)
    return began, datetime.now(UTC)


def _next_second(after: timedelta = timedelta(seconds=1)) -> datetime:
    return (datetime.now(UTC) + after).replace(microsecond=0) + timedelta(seconds=1)


@contextmanager
def played_fleet(tmp_path: Path, *, how: Literal["snapshot", "stream"], per_story: int = 4,
                 server: str = SERVER) -> Iterator[PlayedFleet]:
    """`server`: where its databases are made (the change streams need one at wal_level = logical)."""
    with scratch_databases(*STORES, server=server) as dsns:
        for store in ("cf_prod", "billing_prod", "subs"):
            with psycopg.connect(dsns[store]) as conn:
                create_legacy_schema(conn, store)
        fleet = story_fleet(per_story=per_story, start=_next_second(timedelta(seconds=3)))
        fleet.stripe.save(tmp_path / "stripe")
        with StripeStandIn(tmp_path / "stripe", api_key=API_KEY) as stripe:
            env = {**configured(dsns), "STRIPE_API_KEY": API_KEY, "RECOMPUTE_STRIPE_API_BASE": stripe.base_url}
            if how == "stream":
                _run("cdc", "setup", env=env)

            def ingest_legacy() -> None:  # not Stripe: the stand-in serves its objects as they end up
                for store in ("cf_prod", "billing_prod", "subs"):
                    _run("ingest", "--source", store, env=env)

            committed: dict[datetime, tuple[datetime, datetime]] = {}
            for phase, at in (("A", fleet.instants["S"]), ("B", fleet.instants["B"])):
                _wait_until(at)
                committed[at] = _commit(dsns, fleet.phases[phase])
                ingest_legacy()
            _wait_until(fleet.instants["X"] + timedelta(seconds=1))
            _run("ingest", "--source", "all", env=env)  # Stripe's payments and failures too
            for account_id in fleet.accounts("rewritten"):  # the projector corrects them
                _run("apply", "--account", account_id, env=env)
            ingest_legacy()  # its own writes come back
            rewritten_at = _next_second()
            writes = fleet.rewrite(rewritten_at)
            _wait_until(rewritten_at)
            committed[rewritten_at] = _commit(dsns, writes)
            at = _next_second()
            _wait_until(at + timedelta(seconds=1))
            _run("ingest", "--source", "all", env=env)
            plan = json.loads(_run("plan", "--json", "--as-of", at.isoformat(), env=env))
            try:
                yield PlayedFleet(fleet, plan, at, env, dsns, how, committed)
            finally:
                if how == "stream":
                    _run("cdc", "drop", env=env)
