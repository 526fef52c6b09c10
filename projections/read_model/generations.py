"""Generations of the kept projection (blue/green): one per rules version + digest and instant T.

    pending = open_generation(conn, rules, rules_text, as_of, partitions)   # new, or the one to resume
    done = done_partitions(conn, pending.id)                                  # partition -> its report
    finish(conn, pending.id)                                                  # built_at: every partition done
    switch(conn, pending.id)                                                  # ONE transaction
    active_generation(conn)                                                   # the one `active`, or None

A generation is *pending* until it is switched to (activated_at NULL). A rerun of `backfill` with
the same rules digest resumes the pending generation of that digest (at its T when no --as-of is
given, or when the same T is); a pending generation of other rules, or of these rules at another
T, is dropped (its states go with it, ON DELETE CASCADE): only the latest backfill's work is kept
beside the active generation. The generation that was active before a switch is kept (built,
inactive) so an operator can look at it; an older one is dropped at the switch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

from domain.rules import Rules
from eventlog.tables_present import has_tables

_COLUMNS = "id, rules_version, rules_digest, rules_text, as_of, partitions, built_at, activated_at, active"


@dataclass(frozen=True)
class Generation:
    id: int
    rules_version: str
    rules_digest: str
    rules_text: str
    as_of: datetime
    partitions: int
    built_at: datetime | None = None
    activated_at: datetime | None = None
    active: bool = False

    @property
    def pending(self) -> bool:
        return self.activated_at is None and not self.active


@dataclass(frozen=True)
class Opened:
    generation: Generation
    resumed: bool  # a rerun: the partitions already done are kept
    dropped: tuple[Generation, ...]  # pending generations of other rules (or another T), removed


def choose(pending: Sequence[Generation], rules: Rules, as_of: datetime | None
           ) -> tuple[Generation | None, list[Generation]]:
    """Pure: of the pending generations, the one to resume (same digest and version; the same T
    when one is given) and those to drop (every other)."""
    resume = next((g for g in sorted(pending, key=lambda g: -g.id)
                   if g.rules_digest == rules.digest and g.rules_version == rules.version
                   and (as_of is None or g.as_of == as_of)), None)
    return resume, [g for g in pending if g is not resume]


def open_generation(conn: psycopg.Connection, rules: Rules, rules_text: str, as_of: datetime | None,
                    partitions: int, *, now: datetime) -> Opened:
    """The pending generation to build into (T = as_of, or now when neither it nor a resumed one
    says), in one transaction with the drops it implies."""
    with conn.transaction():
        pending = [g for g in _select(conn, "WHERE activated_at IS NULL AND NOT active ORDER BY id") if g.pending]
        resume, drop = choose(pending, rules, as_of)
        for g in drop:
            conn.execute("DELETE FROM read_model_generation WHERE id = %s", (g.id,))
        if resume is not None:
            return Opened(resume, True, tuple(drop))
        gid = conn.execute(
            "INSERT INTO read_model_generation (rules_version, rules_digest, rules_text, as_of, partitions) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (rules.version, rules.digest, rules_text, as_of or now, partitions)).fetchone()[0]
        return Opened(_select(conn, "WHERE id = %s", (gid,))[0], False, tuple(drop))


def done_partitions(conn: psycopg.Connection, generation: int) -> dict[int, bytes]:
    """The partitions of a generation already committed, with their reports."""
    return {p: bytes(report or b"") for p, report in conn.execute(
        "SELECT partition, report FROM read_model_partition WHERE generation = %s", (generation,))}


def finish(conn: psycopg.Connection, generation: int) -> None:
    with conn.transaction():
        conn.execute("UPDATE read_model_generation SET built_at = coalesce(built_at, now()) WHERE id = %s "
                     "AND (SELECT count(*) FROM read_model_partition WHERE generation = %s) = partitions",
                     (generation, generation))


def switch(conn: psycopg.Connection, generation: int) -> None:
    """Makes a built generation the active one, in ONE transaction: readers see the old or the new,
    never neither or both (the unique index on `active` holds it). Generations older than the one
    it replaces are dropped."""
    with conn.transaction():
        built = conn.execute("SELECT built_at IS NOT NULL FROM read_model_generation WHERE id = %s FOR UPDATE",
                             (generation,)).fetchone()
        if not built or not built[0]:
            raise ValueError(f"generation {generation} is not built: it cannot be made active")
        previous = conn.execute("SELECT id FROM read_model_generation WHERE active").fetchone()
        conn.execute("UPDATE read_model_generation SET active = false WHERE active")
        conn.execute("UPDATE read_model_generation SET active = true, activated_at = now() WHERE id = %s",
                     (generation,))
        conn.execute("DELETE FROM read_model_generation WHERE NOT active AND activated_at IS NOT NULL "
                     "AND id <> %s", (previous[0] if previous else generation,))


def active_generation(conn: psycopg.Connection) -> Generation | None:
    """The active generation, or None before any `backfill --apply` (the tables may not exist yet).
    (The `readmodel` work reads the active rules from it too: one of the two is to go.)"""
    if not has_tables(conn, "read_model_generation"):
        return None
    found = _select(conn, "WHERE active")
    return found[0] if found else None


def read_generation(conn: psycopg.Connection, generation: int) -> Generation:
    return _select(conn, "WHERE id = %s", (generation,))[0]


def _select(conn: psycopg.Connection, where: str, params: tuple = ()) -> list[Generation]:
    return [Generation(*row) for row in conn.execute(f"SELECT {_COLUMNS} FROM read_model_generation {where}", params)]
