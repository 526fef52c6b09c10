"""What followers keep besides the leases, in the event store:

    follow_position   per generation and partition: the notification id of the log its states reflect
                      (committed with them; starts at the generation's built partition, else 0)
    follow_withheld   accounts whose corrections were not written while the breaker was open: they
                      are re-evaluated once it is resumed
    follow_run        the apply runs (apply_run) followers made, by whom
    follow_corrected  per account, when a follower last applied a correction to it: the breaker's
                      window (one row an account, not a scan of the audit, which grows for ever)
    follow_breaker    one row: open (tripped_at, reason) or closed (resumed_at)

    mark_dirty (pure), positions, advance, due_accounts, earliest_due, upsert_states, ...:
    the reads and writes of one batch, in the caller's transaction (new events: eventlog/tail.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from domain.events import CATALOG_STREAM
from domain.partitions import partition_of
from eventlog.tables_present import ddl_done

DDL = """
CREATE TABLE IF NOT EXISTS follow_position (
    generation  bigint  NOT NULL,
    partition   integer NOT NULL,
    position    bigint  NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (generation, partition)
);
CREATE TABLE IF NOT EXISTS follow_withheld (
    generation  bigint  NOT NULL,
    account_id  text    NOT NULL,
    partition   integer NOT NULL,
    since       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (generation, account_id)
);
CREATE TABLE IF NOT EXISTS follow_run (
    run_id      uuid PRIMARY KEY,
    owner       text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS follow_run_started ON follow_run (started_at);
CREATE TABLE IF NOT EXISTS follow_corrected (
    account_id   text PRIMARY KEY,
    corrected_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS follow_breaker (
    id          integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    open        boolean NOT NULL DEFAULT false,
    tripped_at  timestamptz,
    reason      text,
    resumed_at  timestamptz
);
INSERT INTO follow_breaker (id) VALUES (1) ON CONFLICT DO NOTHING;
"""


def ensure_tracking(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('recompute.follow.ddl'))")
        if not ddl_done(conn, DDL):  # the DDL would lock the tables that running followers' steps use
            conn.execute(DDL)


def positions(conn: psycopg.Connection, generation: int, partitions: Sequence[int]) -> dict[int, int]:
    """Each partition's position; one never followed starts where the generation's build left it (else 0)."""
    found = {p: pos for p, pos in conn.execute(
        "SELECT partition, position FROM follow_position WHERE generation = %s AND partition = ANY(%s)",
        (generation, list(partitions)))}
    missing = [p for p in partitions if p not in found]
    if missing:
        built = {p: pos for p, pos in conn.execute(
            "SELECT partition, position FROM read_model_partition WHERE generation = %s AND partition = ANY(%s)",
            (generation, missing))}
        found.update({p: built.get(p, 0) for p in missing})
    return found


def advance(conn: psycopg.Connection, generation: int, to: dict[int, int]) -> None:
    conn.execute(
        "INSERT INTO follow_position (generation, partition, position) "
        "SELECT %s, p, pos FROM unnest(%b::int[], %b::bigint[]) AS u(p, pos) "
        "ON CONFLICT (generation, partition) DO UPDATE SET position = excluded.position, updated_at = now()",
        (generation, list(to), list(to.values())))


def mark_dirty(rows: Sequence[tuple[int, str]], positions: Mapping[int, int], count: int
               ) -> tuple[set[str], set[int], int]:
    """Pure: of new events (id, stream), the accounts of our partitions (`positions`' keys) they make
    dirty (only events past their partition's position), the partitions a product_config change
    makes wholly dirty, and how many events were ours."""
    dirty: set[str] = set()
    catalog: set[int] = set()
    ours = 0
    for nid, stream in rows:
        if stream == CATALOG_STREAM:
            catalog |= {p for p, at in positions.items() if nid > at}
            continue
        p = partition_of(stream, count)
        if p in positions and nid > positions[p]:
            dirty.add(stream)
            ours += 1
    return dirty, catalog, ours


def first_streams(rows: Sequence[tuple[int, str]], most: int,
                  ours: Callable[[str], bool] = lambda _: True) -> Sequence[tuple[int, str]]:
    """Pure: the longest prefix of new events (id, stream) naming at most `most` streams that are
    `ours` (at least one): a backlog is worked down in steps of a bounded size, each short enough to
    stay well inside the lease its fence session is timed out at, rather than in one long step.
    Streams not ours (another follower's partitions) cost the step nothing, so they do not count."""
    seen: set[str] = set()
    for i, (_, stream) in enumerate(rows):
        if not ours(stream):
            continue
        seen.add(stream)
        if len(seen) > max(most, 1):
            return rows[:i]
    return rows


def wake_at(next_action_at: datetime | None, source_times: Iterable[datetime], now: datetime) -> datetime | None:
    """Pure: when an account must be evaluated again though nothing new comes: its truth's next
    action, or the earliest of its events the fold at `now` left out (source_time after now: a
    change committed after the step took its clock and appended before it read the log, or a
    source whose clock is ahead of ours), whichever comes first. The step's position moves past
    such an event, so only this timer brings the account back."""
    later = min((t for t in source_times if t > now), default=None)
    if later is None or (next_action_at is not None and next_action_at <= later):
        return next_action_at
    return later


def due_accounts(conn: psycopg.Connection, generation: int, partitions: Sequence[int], now: datetime
                 ) -> dict[str, datetime]:
    """Accounts of `partitions` whose next_action_at has come (the timer index), with it."""
    return dict(conn.execute(
        "SELECT account_id, next_action_at FROM read_model_state WHERE generation = %s AND next_action_at <= %s "
        "AND partition = ANY(%s)", (generation, now, list(partitions))).fetchall())


def clear_timers(conn: psycopg.Connection, generation: int, accounts: Iterable[str]) -> None:
    """Due accounts the evaluation returned nothing for (no longer in the log): their timer is
    spent, so a follower never wakes for them again and again."""
    if ids := list(accounts):
        conn.execute("UPDATE read_model_state SET next_action_at = NULL WHERE generation = %s "
                     "AND account_id = ANY(%s)", (generation, ids))


def earliest_due(conn: psycopg.Connection, generation: int, partitions: Sequence[int]) -> datetime | None:
    return conn.execute("SELECT min(next_action_at) FROM read_model_state WHERE generation = %s "  # type: ignore[index,no-any-return]  # always one row
                        "AND partition = ANY(%s)", (generation, list(partitions))).fetchone()[0]


def accounts_of(conn: psycopg.Connection, generation: int, partitions: Sequence[int]) -> list[str]:
    return [r[0] for r in conn.execute("SELECT account_id FROM read_model_state WHERE generation = %s "
                                       "AND partition = ANY(%s)", (generation, list(partitions)))]


@dataclass(frozen=True)
class StateRow:
    account_id: str
    partition: int
    state: dict[str, Any]
    next_action_at: datetime | None
    stream_version: int
    as_of: datetime


def upsert_states(conn: psycopg.Connection, generation: int, rows: Iterable[StateRow]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO read_model_state (generation, account_id, partition, state, next_action_at, stream_version, "
            "as_of) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (generation, account_id) DO UPDATE SET "
            "state = excluded.state, next_action_at = excluded.next_action_at, "
            "stream_version = excluded.stream_version, as_of = excluded.as_of",
            [(generation, r.account_id, r.partition, Jsonb(r.state), r.next_action_at, r.stream_version, r.as_of)
             for r in rows])


def withheld(conn: psycopg.Connection, generation: int, partitions: Sequence[int]) -> list[str]:
    return [r[0] for r in conn.execute("SELECT account_id FROM follow_withheld WHERE generation = %s "
                                       "AND partition = ANY(%s)", (generation, list(partitions)))]


def set_withheld(conn: psycopg.Connection, generation: int, evaluated: Sequence[tuple[str, int]],
                 still: set[str]) -> None:
    """Of the accounts just evaluated, those in `still` are withheld, the others no longer."""
    conn.execute("DELETE FROM follow_withheld WHERE generation = %s AND account_id = ANY(%s)",
                 (generation, [a for a, _ in evaluated]))
    if still:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO follow_withheld (generation, account_id, partition) VALUES (%s, %s, %s)",
                            [(generation, a, p) for a, p in evaluated if a in still])
