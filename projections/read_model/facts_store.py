"""The kept facts: per account, what the fold made of its stream, so `plan` need not replay it.

    keepable(events, as_of) -> (version, time)      pure: may the facts of this fold be kept?
    usable(kept, head, as_of) -> bool              pure: may kept facts stand for a fold at as_of?
    encode(facts) / decode(data, as_of)            orjson (pydantic's JSON) of AccountFacts
    KeptFactsReader(dsn)                           the rows of a range, their streams' heads, the bytes
    keep(dsn, rows)                                one upsert per batch (skipped on a read-only store)

Facts are kept from `fold(..., legacy=False)` (domain/fold.py): they do not depend on the rules,
and hold no observed legacy rows (plan compares live rows; only explain needs the recorded ones,
and it replays its one account anyway for its timeline).

Why kept facts are exact. A fold at T reads exactly the truth's events with source_time <= T
(`read_by_truth`), sorted; `as_of` is the only other input (the facts carry it). Facts are kept
only after a fold at a T that is at or after the source time of every truth event of the stream
as read (its versions 1..stream_version); `latest_source_time` is the latest of those. For a later
T' >= latest_source_time, while the stream's head is still stream_version, the fold at T' reads
the same events in the same order: the same facts but for `as_of`, which `decode` sets to T'.
Observed-only events (subs_*, schedules, deletions timed at the snapshot read) do not count: a T
in the past before them still uses the kept facts. A stream with no truth event is not kept (its
`account_id` would depend on whether any event is before T).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from domain.events import AccountEvent
from domain.facts import AccountFacts
from domain.fold import FOLD_VERSION, read_by_truth
from eventlog.account_log import EVENTS_TABLE
from eventlog.tables_present import has_tables

TABLE = "read_model_facts"


@dataclass(frozen=True)
class Kept:
    """A read_model_facts row without its facts."""

    account_id: str
    stream_version: int
    latest_source_time: datetime | None
    fold_version: str


@dataclass(frozen=True)
class Keep:
    """What to write for one account after a full fold."""

    account_id: str
    stream_version: int
    latest_source_time: datetime | None
    facts: bytes


def keepable(events: Sequence[AccountEvent], as_of: datetime) -> tuple[int, datetime] | None:
    """(stream_version, latest_source_time) to keep a fold of `events` at `as_of` under, or None:
    when a truth event is after as_of (the facts miss it), or none is read at all."""
    latest: datetime | None = None
    head = 0
    for event in events:
        if event.originator_version > head:
            head = event.originator_version
        if read_by_truth(event) and (latest is None or event.source_time > latest):
            latest = event.source_time
    if latest is None or latest > as_of:
        return None
    return head, latest


def usable(kept: Kept | None, head: int | None, as_of: datetime) -> bool:
    """Kept facts stand for a fold at `as_of`: same fold version, the stream has not moved since,
    and no truth event they reflect is after as_of."""
    return (kept is not None and head is not None and kept.fold_version == FOLD_VERSION
            and kept.stream_version == head
            and (kept.latest_source_time is None or kept.latest_source_time <= as_of))


def encode(facts: AccountFacts) -> bytes:
    return facts.model_dump_json().encode()


def decode(data: bytes, as_of: datetime) -> AccountFacts:
    """The kept facts as a fold at `as_of` would make them (measured: ~150 µs an account, a sixth
    of reading and folding its events; building them with `trusted` from orjson's dicts, converting
    the datetime and tuple fields, measured no faster: ~24 models an account)."""
    facts = AccountFacts.model_validate_json(data)
    return facts.model_copy(update={"as_of": as_of})


class KeptFactsReader:
    """One REPEATABLE READ, read-only snapshot of a range's kept facts and its streams' heads, so
    the facts read match the heads they were judged by."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, options="-c TimeZone=UTC")
        self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        self.present = has_tables(self.conn, TABLE)

    def close(self) -> None:
        self.conn.close()

    def heads(self, where: sql.Composable) -> dict[str, int]:
        """Each stream of the range and its head (`where` on originator_id)."""
        return dict(self.conn.execute(sql.SQL(
            "SELECT originator_id, max(originator_version) FROM {} WHERE {} GROUP BY 1"
        ).format(sql.Identifier(EVENTS_TABLE), where)).fetchall())

    def kept(self, where: sql.Composable) -> dict[str, Kept]:
        """The kept rows of the range (`where` on account_id), without their facts."""
        if not self.present:
            return {}
        return {row[0]: Kept(*row) for row in self.conn.execute(sql.SQL(
            "SELECT account_id, stream_version, latest_source_time, fold_version FROM {} WHERE {}"
        ).format(sql.Identifier(TABLE), where))}

    def facts(self, where: sql.Composable, order: sql.Composable, wanted: set[str]
              ) -> Iterator[tuple[str, bytes]]:
        """The facts of the `wanted` accounts of the range, in account order (the others' bytes are skipped)."""
        if not self.present or not wanted:
            return
        with self.conn.cursor() as cur, cur.copy(sql.SQL(
                "COPY (SELECT account_id, facts FROM {} WHERE {} ORDER BY {}) TO STDOUT (FORMAT BINARY)"
        ).format(sql.Identifier(TABLE), where, order)) as copy:
            copy.set_types(["text", "bytea"])
            for account_id, data in copy.rows():
                if account_id in wanted:
                    yield account_id, data


UPSERT = sql.SQL(
    "INSERT INTO {table} (account_id, stream_version, latest_source_time, fold_version, facts) "
    "SELECT * FROM unnest(%s::text[], %s::integer[], %s::timestamptz[], %s::text[], %s::bytea[]) "
    "ON CONFLICT (account_id) DO UPDATE SET stream_version = EXCLUDED.stream_version, "
    "latest_source_time = EXCLUDED.latest_source_time, fold_version = EXCLUDED.fold_version, facts = EXCLUDED.facts "
    # a slower plan that read the stream earlier must not put back older facts (a newer fold version always wins)
    "WHERE {table}.stream_version <= EXCLUDED.stream_version OR {table}.fold_version <> EXCLUDED.fold_version"
).format(table=sql.Identifier(TABLE))


def can_keep(dsn: str) -> bool:
    """The table exists (a writing command made it: plan creates nothing) and this session may
    write it: not a standby, not a read-only default, and granted INSERT and UPDATE."""
    with psycopg.connect(dsn) as conn:
        if not has_tables(conn, TABLE):
            return False
        row = conn.execute(
            "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off' "
            "AND has_table_privilege(%s, 'INSERT') AND has_table_privilege(%s, 'UPDATE')", (TABLE, TABLE)).fetchone()
    return bool(row and row[0])


def keep(conn: psycopg.Connection, rows: Sequence[Keep]) -> None:
    """Upserts a batch of kept facts in one statement and commits it."""
    if not rows:
        return
    with conn.transaction(), conn.cursor(binary=True) as cur:  # binary: the facts go as bytes, not hex text
        cur.execute(UPSERT, ([r.account_id for r in rows], [r.stream_version for r in rows],
                              [r.latest_source_time for r in rows], [FOLD_VERSION] * len(rows),
                              [r.facts for r in rows]))
