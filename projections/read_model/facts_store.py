"""The kept facts: per account, what the fold made of its stream, so `plan` need not replay it.

    keepable(events, as_of) -> (version, time)      pure: may the facts of this fold be kept?
    usable(kept, head, as_of) -> bool              pure: may kept facts stand for a fold at as_of?
    encode(facts) / decode(data, as_of)            orjson (pydantic's JSON) of AccountFacts
    decision_key(rules, catalog) -> DecisionKey    what a kept decision was decided under
    encode_state(state) / decode_state(...)        a kept decision, and it restated at a later T
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

Kept decisions (the `decided_*` columns). Beside facts complete at T0 a plan keeps the true state
it decided from them at T0 (explain off), with `decided_until` = domain/truth.decided_until: with
no new event the truth at any T in [T0, decided_until) is that state restated at T
(domain/truth.restated: as_of and days_overdue, which nothing compares). The decision stands for
a plan at T when the facts stand (`usable`: so the decision's facts are the fold at T), the rules
digest and the catalog (cf_prod.product_config folded at T) are those it was decided under,
DECIDED_BY (the truth's code version) is unchanged, and decided_as_of <= T < decided_until. Then
plan skips decoding the facts and the truth and diffs the restated state against the live rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
import hashlib

import psycopg
from psycopg import sql

from domain.catalog import Catalog
from domain.events import AccountEvent
from domain.facts import AccountFacts
from domain.fold import FOLD_VERSION, read_by_truth
from domain.rules import Rules
from domain.state import TrueState
from domain.truth import restated
from eventlog.account_log import EVENTS_TABLE
from eventlog.tables_present import has_tables

TABLE = "read_model_facts"
DECIDED_BY = "truth-1"  # bump when domain/truth.py or domain/dunning.py would decide differently


@dataclass(frozen=True)
class DecisionKey:
    """What a kept decision was decided under: the rules (digest and DECIDED_BY) and the catalog."""

    rules: str
    catalog: str


def decision_key(rules: Rules, catalog: Catalog) -> DecisionKey:
    return DecisionKey(f"{rules.digest}/{DECIDED_BY}",
                       hashlib.sha256(catalog.model_dump_json().encode()).hexdigest()[:16])


@dataclass(frozen=True)
class Decision:
    """A true state to keep beside the facts: decided at as_of, standing until `until` (None: ever)."""

    state: bytes
    as_of: datetime
    until: datetime | None
    key: DecisionKey


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
    facts: bytes | None  # None: the facts kept stand; only the decision is new
    decision: Decision | None = None


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


def encode_state(state: TrueState) -> bytes:
    return state.model_dump_json().encode()


def decode_state(data: bytes, as_of: datetime, rules: Rules) -> TrueState:
    """A kept decision as true_state would say it at `as_of` (within its standing)."""
    return restated(TrueState.model_validate_json(data), as_of, rules)


class KeptFactsReader:
    """One REPEATABLE READ, read-only snapshot of a range's kept facts and its streams' heads, so
    the facts read match the heads they were judged by."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, options="-c TimeZone=UTC")
        self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        self.present = has_tables(self.conn, TABLE)
        self.decisions = self.present and has_decisions(self.conn)

    def close(self) -> None:
        self.conn.close()

    def heads(self, where: sql.Composable, *, walk: bool = False) -> dict[str, int]:
        """Each stream of the range and its head (`where` on originator_id).

        With `walk` (only for a `where` that is an interval of the index's order), one descent of
        the primary key per stream, from the top of the range down: the first entry of a stream is
        its head. Measured on 445k events: 0.13 s for 5,000 streams against 0.5-0.75 s for the
        GROUP BY, which reads every event's heap row."""
        if walk:
            query = sql.SQL(
                "WITH RECURSIVE s AS ((SELECT originator_id, originator_version FROM {t} WHERE {w} "
                "ORDER BY originator_id DESC, originator_version DESC LIMIT 1) UNION ALL "
                "SELECT n.originator_id, n.originator_version FROM s, LATERAL (SELECT originator_id, originator_version "
                "FROM {t} WHERE originator_id < s.originator_id AND {w} "
                "ORDER BY originator_id DESC, originator_version DESC LIMIT 1) n) SELECT * FROM s")
        else:
            query = sql.SQL("SELECT originator_id, max(originator_version) FROM {t} WHERE {w} GROUP BY 1")
        return dict(self.conn.execute(query.format(t=sql.Identifier(EVENTS_TABLE), w=where)).fetchall())

    def kept(self, where: sql.Composable) -> dict[str, Kept]:
        """The kept rows of the range (`where` on account_id), without their facts."""
        if not self.present:
            return {}
        return {row[0]: Kept(*row) for row in self.conn.execute(sql.SQL(
            "SELECT account_id, stream_version, latest_source_time, fold_version FROM {} WHERE {}"
        ).format(sql.Identifier(TABLE), where))}

    def facts(self, where: sql.Composable, order: sql.Composable, wanted: set[str], as_of: datetime,
              key: DecisionKey | None = None) -> Iterator[tuple[str, bool, bytes]]:
        """The `wanted` accounts of the range in account order, each with its kept decision when it
        stands at `as_of` under `key` (True, the state's bytes), else its facts (False, their bytes).
        Only the bytes used are read; the others' rows are skipped. `wanted` accounts' facts stand."""
        if not self.present or not wanted:
            return
        stands: sql.Composable = sql.SQL("false")
        if key is not None and self.decisions:
            stands = sql.SQL(
                "decided_state IS NOT NULL AND decided_rules_digest = {} AND decided_catalog_digest = {} "
                "AND decided_as_of <= {at} AND (decided_until IS NULL OR {at} < decided_until)").format(
                sql.Literal(key.rules), sql.Literal(key.catalog), at=sql.Literal(as_of))
        with self.conn.cursor() as cur, cur.copy(sql.SQL(
                "COPY (SELECT account_id, stands, CASE WHEN stands THEN {} ELSE facts END "
                "FROM (SELECT *, {} AS stands FROM {} WHERE {}) k ORDER BY {}) TO STDOUT (FORMAT BINARY)"
        ).format(sql.Identifier("decided_state") if self.decisions else sql.SQL("NULL"), stands,
                 sql.Identifier(TABLE), where, order)) as copy:
            copy.set_types(["text", "bool", "bytea"])
            for account_id, decided, data in copy.rows():
                if account_id in wanted:
                    yield account_id, decided, data


DECIDED = ("decided_state", "decided_as_of", "decided_until", "decided_rules_digest", "decided_catalog_digest")
_DECIDED = sql.SQL(", ").join(map(sql.Identifier, DECIDED))


def _set_decided(source: str) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL("{0} = {1}.{0}").format(sql.Identifier(c), sql.Identifier(source))
                              for c in DECIDED)


UPSERT = sql.SQL(
    "INSERT INTO {table} (account_id, stream_version, latest_source_time, fold_version, facts, {decided}) "
    "SELECT * FROM unnest(%s::text[], %s::integer[], %s::timestamptz[], %s::text[], %s::bytea[], "
    "%s::bytea[], %s::timestamptz[], %s::timestamptz[], %s::text[], %s::text[]) "
    "ON CONFLICT (account_id) DO UPDATE SET stream_version = EXCLUDED.stream_version, "
    "latest_source_time = EXCLUDED.latest_source_time, fold_version = EXCLUDED.fold_version, facts = EXCLUDED.facts, "
    "{set_decided} "  # new facts: the decision given with them, or none (an older one was not decided from them)
    # a slower plan that read the stream earlier must not put back older facts (a newer fold version always wins)
    "WHERE {table}.stream_version <= EXCLUDED.stream_version OR {table}.fold_version <> EXCLUDED.fold_version"
).format(table=sql.Identifier(TABLE), decided=_DECIDED, set_decided=_set_decided("excluded"))
# A new decision beside facts already kept: only while they are still the facts it was decided from.
DECIDE = sql.SQL(
    "UPDATE {table} t SET {set_decided} FROM unnest(%s::text[], %s::integer[], "
    "%s::bytea[], %s::timestamptz[], %s::timestamptz[], %s::text[], %s::text[]) "
    "AS d(account_id, stream_version, {decided}) "
    "WHERE t.account_id = d.account_id AND t.stream_version = d.stream_version AND t.fold_version = %s"
).format(table=sql.Identifier(TABLE), decided=_DECIDED, set_decided=_set_decided("d"))


def has_decisions(conn: psycopg.Connection) -> bool:
    """read_model_facts has the decided_* columns (a table made before them gets them from the
    next writing command's ensure_read_model; until then no decision is kept or read)."""
    row = conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() "
                       "AND table_name = %s AND column_name = ANY(%s)", (TABLE, list(DECIDED))).fetchone()
    return bool(row and row[0] == len(DECIDED))


def can_keep(dsn: str) -> bool:
    """The table exists (a writing command made it: plan creates nothing) and this session may
    write it: not a standby, not a read-only default, and granted INSERT and UPDATE."""
    with psycopg.connect(dsn) as conn:
        if not has_tables(conn, TABLE) or not has_decisions(conn):
            return False
        row = conn.execute(
            "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off' "
            "AND has_table_privilege(%s, 'INSERT') AND has_table_privilege(%s, 'UPDATE')", (TABLE, TABLE)).fetchone()
    return bool(row and row[0])


def _decided(rows: Sequence[Keep]) -> list[list[object]]:
    """The decision columns of `rows`, one list a column (NULLs where a row has none)."""
    found = [(r.decision.state, r.decision.as_of, r.decision.until, r.decision.key.rules, r.decision.key.catalog)
             if r.decision else (None,) * len(DECIDED) for r in rows]
    return [list(column) for column in zip(*found)] if found else [[] for _ in DECIDED]


def keep(conn: psycopg.Connection, rows: Sequence[Keep]) -> None:
    """Upserts a batch of kept facts (with their decisions) and adds the decisions beside facts
    already kept, in one transaction, and commits it."""
    if not rows:
        return
    folded = [r for r in rows if r.facts is not None]
    decided = [r for r in rows if r.facts is None and r.decision is not None]
    with conn.transaction(), conn.cursor(binary=True) as cur:  # binary: the bytes go as bytes, not hex text
        if folded:
            cur.execute(UPSERT, ([r.account_id for r in folded], [r.stream_version for r in folded],
                                  [r.latest_source_time for r in folded], [FOLD_VERSION] * len(folded),
                                  [r.facts for r in folded], *_decided(folded)))
        if decided:
            cur.execute(DECIDE, ([r.account_id for r in decided], [r.stream_version for r in decided],
                                  *_decided(decided), FOLD_VERSION))
