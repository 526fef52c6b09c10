"""Generations of the kept projection (blue/green): one per rules version + digest and instant T.
The one owner of `read_model_generation`: every reader of the active generation goes through `active`.

    active(conn)                                                              # the one `active`, or None
    pending = open_generation(conn, rules, rules_text, as_of, partitions)   # new, or the one to resume
    done = done_partitions(conn, pending.id)                                  # partition -> its report
    finish(conn, pending.id)                                                  # built_at: every partition done
    switch(conn, pending.id)                                                  # ONE transaction
    generation, created = active_or_new(conn, rules, as_of)                   # what followers write into

A generation is *pending* until it is switched to (activated_at NULL). A rerun of `backfill` with
the same rules digest resumes the pending generation of that digest (at its T when no --as-of is
given, or when the same T is); a pending generation of other rules, or of these rules at another
T, is dropped (its states go with it, ON DELETE CASCADE): only the latest backfill's work is kept
beside the active generation. The generation that was active before a switch is kept (built,
inactive) so an operator can look at it; an older one is dropped at the switch.

Followers write into the active generation, or, when none is active yet, into one of the rules
`project` was given, made active at once and left for them to fill (`active_or_new`); an active
generation of other rules is refused (RulesDiffer): rules change through `backfill`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from domain.partitions import PARTITIONS
from domain.rules import Rules, RulesError, parse_rules
from eventlog.stores import Connection
from eventlog.tables_present import has_tables

_COLUMNS = ("id, rules_version, rules_digest, rules_text, as_of, partitions, created_at, built_at, activated_at, "
            "active")


class ActiveRulesUnreadable(RuntimeError):
    """The active generation's rules text no longer parses (a newer or damaged store)."""


class RulesDiffer(Exception):
    """The active projection is of other rules than the ones given."""


@dataclass(frozen=True)
class Generation:
    id: int
    rules_version: str
    rules_digest: str
    rules_text: str
    as_of: datetime
    partitions: int
    created_at: datetime | None = None
    built_at: datetime | None = None
    activated_at: datetime | None = None
    active: bool = False

    @property
    def pending(self) -> bool:
        return self.activated_at is None and not self.active

    @cached_property
    def rules(self) -> Rules:
        """The rules it was built under, parsed from its rules text (ActiveRulesUnreadable if not)."""
        try:
            return parse_rules(self.rules_text, source=f"read_model_generation {self.id}")
        except RulesError as error:
            raise ActiveRulesUnreadable(f"the active generation's rules do not parse: {error}") from error


@dataclass(frozen=True)
class Opened:
    generation: Generation
    resumed: bool  # a rerun: the partitions already done are kept
    dropped: tuple[Generation, ...]  # pending generations of other rules (or another T), removed


def active(conn: Connection) -> Generation | None:
    """The active generation, its rules parsed (ActiveRulesUnreadable here, not at a later use);
    None before any `backfill --apply` or `project` (the tables may not exist yet). `conn` may be
    read-only."""
    if not has_tables(conn, "read_model_generation"):
        return None
    found = _select(conn, "WHERE active")
    if not found:
        return None
    _ = found[0].rules  # parsed now: an unreadable active generation fails here
    return found[0]


def resume_or_drop(pending: Sequence[Generation], rules: Rules, as_of: datetime | None
                   ) -> tuple[Generation | None, list[Generation]]:
    """Pure: of the pending generations, the one to resume (same digest and version; the same T
    when one is given) and those to drop (every other)."""
    resume = next((g for g in sorted(pending, key=lambda g: -g.id)
                   if g.rules_digest == rules.digest and g.rules_version == rules.version
                   and (as_of is None or g.as_of == as_of)), None)
    return resume, [g for g in pending if g is not resume]


def open_generation(conn: Connection, rules: Rules, rules_text: str, as_of: datetime | None,
                    partitions: int, *, now: datetime) -> Opened:
    """The pending generation to build into (T = as_of, or now when neither it nor a resumed one
    says), in one transaction with the drops it implies."""
    with conn.transaction():
        pending = [g for g in _select(conn, "WHERE activated_at IS NULL AND NOT active ORDER BY id") if g.pending]
        resume, drop = resume_or_drop(pending, rules, as_of)
        for g in drop:
            conn.execute("DELETE FROM read_model_generation WHERE id = %s", (g.id,))
        if resume is not None:
            return Opened(resume, True, tuple(drop))
        gid = _insert(conn, rules, rules_text, as_of or now, partitions, active=False)
        return Opened(read_generation(conn, gid), False, tuple(drop))


def active_or_new(conn: Connection, rules: Rules, as_of: datetime) -> tuple[Generation, bool]:
    """The generation followers write into, and whether it was made now (active at once, of
    `rules` at `as_of`, every partition); RulesDiffer when the active one is of other rules."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('recompute.follow.generation'))")
        found = active(conn)
        created = found is None
        generation = found or read_generation(conn, _insert(conn, rules, rules.to_toml(), as_of, PARTITIONS,
                                                            active=True))
    if generation.rules_digest != rules.digest:
        raise RulesDiffer(f"the active projection (generation {generation.id}) is of rules {generation.rules_version} "
                          f"(digest {generation.rules_digest}), not {rules.version} (digest {rules.digest}); "
                          "change the rules with `recompute backfill --rules FILE --apply`")
    return generation, created


def done_partitions(conn: Connection, generation: int) -> dict[int, bytes]:
    """The partitions of a generation already committed, with their reports."""
    return {p: bytes(report or b"") for p, report in conn.execute(
        "SELECT partition, report FROM read_model_partition WHERE generation = %s", (generation,))}


def finish(conn: Connection, generation: int) -> None:
    with conn.transaction():
        conn.execute("UPDATE read_model_generation SET built_at = coalesce(built_at, now()) WHERE id = %s "
                     "AND (SELECT count(*) FROM read_model_partition WHERE generation = %s) = partitions",
                     (generation, generation))


def switch(conn: Connection, generation: int) -> None:
    """Makes a built generation the active one, in ONE transaction: readers see the old or the new,
    never neither or both (the unique index on `active` holds it). Generations older than the one
    it replaces are dropped."""
    with conn.transaction():
        built = conn.execute("SELECT built_at IS NOT NULL FROM read_model_generation WHERE id = %s FOR UPDATE",
                             (generation,)).fetchone()
        if not built or not built[0]:
            raise ValueError(f"generation {generation} is not built: it cannot be made active")
        previous = conn.execute("UPDATE read_model_generation SET active = false WHERE active RETURNING id").fetchone()
        conn.execute("UPDATE read_model_generation SET active = true, activated_at = now() WHERE id = %s",
                     (generation,))
        conn.execute("DELETE FROM read_model_generation WHERE NOT active AND activated_at IS NOT NULL "
                     "AND id <> %s", (previous[0] if previous else generation,))


def read_generation(conn: Connection, generation: int) -> Generation:
    return _select(conn, "WHERE id = %s", (generation,))[0]


def _insert(conn: Connection, rules: Rules, rules_text: str, as_of: datetime, partitions: int, *,
            active: bool) -> int:
    row = conn.execute(
        "INSERT INTO read_model_generation (rules_version, rules_digest, rules_text, as_of, partitions, active, "
        "activated_at) VALUES (%s, %s, %s, %s, %s, %s, CASE WHEN %s THEN now() END) RETURNING id",
        (rules.version, rules.digest, rules_text, as_of, partitions, active, active)).fetchone()
    assert row is not None  # INSERT … RETURNING returns its row
    return int(row[0])


def _select(conn: Connection, where: str, params: tuple[object, ...] = ()) -> list[Generation]:
    return [Generation(*row) for row in conn.execute(f"SELECT {_COLUMNS} FROM read_model_generation {where}", params)]
