"""The kept facts: per account, what the fold made of its stream, so an evaluation need not replay it.

    keepable(events, as_of) -> (version, time)      pure: may the facts of this fold be kept?
    usable(kept, head, as_of) -> bool              pure: may kept facts stand for a fold at as_of?
    encode(facts) / decode(data, as_of)            orjson (pydantic's JSON) of AccountFacts
    decision_key(rules, catalog) -> DecisionKey    what a kept decision was decided under
    encode_state(state) / decode_state(...)        a kept decision, and it restated at a later T
    encode_result(...) / decode_result(data)       what a decision found against the account's rows (Known)
    parked_digest(rows), rows_digests(...)         what a kept result was found for (pure)
    KeptFactsReader(stores)                        the rows of a range, their streams' heads, the bytes
    keep(conn, rows)                               one upsert per batch (skipped on a read-only store)

The table (`read_model_facts`) is made with the read model's (projections/read_model/tables.py);
the engine (projections/evaluation/engine.py) is what reads and writes it.

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

Kept results (`decided_result`, `decided_parked_digest`, `decided_rows_digest`). Beside a decision
a plan keeps what the diff and the hold found from it (the corrections, the held rows, whether
cf_prod knows the account: `Known`), with what they were found against: a digest of the account's
parked rows (`parked_digest`) and, per legacy store, a digest the store made of the account's
compared rows (projections/legacy_rows.py, ROWS_DIGEST). corrections_for and hold read the state,
the catalog, the parked rows and the live rows, and nothing of the state that `restated` changes
(as_of, days_overdue, rules_version). So while the decision stands (its key names the catalog, and
DIFFED_BY the diff's and the hold's code), the parked rows are the same and every store's digest
is unchanged, a plan at any T where the decision stands would find the same: it yields the kept
result without reading the rows, decoding the state or diffing. A store's digest changes with any
compared row of the account (an update, an insert, a delete), with the store's table shapes and
with the session settings that shape its JSON. The result is written only with its decision (or,
for a decision that stands, guarded by that decision: `result_for`), and new facts or a new
decision clear it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson
from psycopg import sql

from domain.catalog import Catalog
from domain.diff import Correction
from domain.events import AccountEvent
from domain.facts import AccountFacts
from domain.fold import FOLD_VERSION, read_by_truth
from domain.held import HeldRow
from domain.rules import Rules
from domain.state import TrueState
from domain.truth import restated
from eventlog.range_reads import stream_heads, streaming_session
from eventlog.stores import Connection, Stores
from eventlog.tables_present import has_columns, has_tables, may_write
from projections.legacy_rows import RowsDigests

TABLE = "read_model_facts"
DECIDED_BY = "truth-1"  # bump when domain/truth.py or domain/dunning.py would decide differently
DIFFED_BY = "diff-1"  # bump when domain/diff.py, domain/held.py or the compared tables would find differently


@dataclass(frozen=True)
class DecisionKey:
    """What a kept decision was decided under: the rules (digest, DECIDED_BY, DIFFED_BY) and the catalog."""

    rules: str
    catalog: str


def decision_key(rules: Rules, catalog: Catalog) -> DecisionKey:
    return DecisionKey(f"{rules.digest}/{DECIDED_BY}/{DIFFED_BY}",
                       hashlib.sha256(catalog.model_dump_json().encode()).hexdigest()[:16])


@dataclass(frozen=True)
class Known:
    """What plan found for an account from a decision: whether cf_prod knows it, its corrections
    and its held rows (what `plan_range` needs of it; the state itself is not decoded)."""

    account_exists: bool
    corrections: list[Correction]
    held: list[HeldRow]


@dataclass(frozen=True)
class Found:
    """A kept result: `Known` (encoded) and what it was found against."""

    data: bytes  # encode_result
    parked: bytes | None  # parked_digest of the account's parked rows
    rows: RowsDigests


@dataclass(frozen=True)
class Decision:
    """A true state to keep beside the facts: decided at as_of, standing until `until` (None: ever),
    with what was found from it (None: nothing kept of it)."""

    state: bytes
    as_of: datetime
    until: datetime | None
    key: DecisionKey
    found: Found | None = None


@dataclass(frozen=True)
class Kept:
    """A read_model_facts row without its facts; with the kept result when the decision beside
    them stands at the T and under the key it was read for (KeptFactsReader.kept)."""

    account_id: str
    stream_version: int
    latest_source_time: datetime | None
    fold_version: str
    decided_as_of: datetime | None = None  # of a decision that stands (None: none does)
    found: Found | None = None


@dataclass(frozen=True)
class Keep:
    """What to write for one account after a full fold."""

    account_id: str
    stream_version: int
    latest_source_time: datetime | None
    facts: bytes | None  # None: the facts kept stand; only the decision is new
    decision: Decision | None = None
    # With neither facts nor a decision: a result found from the decision kept at `result_for`
    # (its decided_as_of, under `decision_key`), which still stands.
    found: Found | None = None
    result_for: tuple[datetime, DecisionKey] | None = None


def keepable(events: Sequence[AccountEvent], as_of: datetime, head: int | None = None) -> tuple[int, datetime] | None:
    """(stream_version, latest_source_time) to keep a fold of `events` at `as_of` under, or None:
    when a truth event is after as_of (the facts miss it), or none is read at all. `head`: the
    stream's head version, when `events` need not hold every event (a TruthStream's)."""
    latest: datetime | None = None
    for event in events:
        if head is None or event.originator_version > head:
            head = event.originator_version
        if read_by_truth(event) and (latest is None or event.source_time > latest):
            latest = event.source_time
    if latest is None or latest > as_of or head is None:
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


def encode_result(known: Known) -> bytes:
    return orjson.dumps([known.account_exists, [c.as_json() for c in known.corrections],
                         [h.as_json() for h in known.held]])


def decode_result(data: bytes) -> Known:
    """A kept result as plan found it (JSON round-trips a Correction's and a HeldRow's values:
    they are JSON values, ISO instants and the keys' JSON, as the rows gave them)."""
    exists, corrections, held = orjson.loads(data)
    return Known(exists, [Correction.model_validate(c) for c in corrections], [HeldRow.model_validate(h) for h in held])


def parked_digest(parked: Sequence[HeldRow]) -> bytes | None:
    """What a kept result must have been found against for an account with these parked rows."""
    if not parked:
        return None
    return hashlib.sha256(orjson.dumps([h.as_json() for h in parked])).digest()


def encode_rows_digests(rows: RowsDigests) -> bytes:
    """One byte a store (0: no rows, 1: a 32-byte SHA-256 follows), so the column is one bytea."""
    return b"".join(b"\x00" if d is None else b"\x01" + d for d in rows)


def decode_rows_digests(data: bytes) -> RowsDigests:
    found: list[bytes | None] = []
    at = 0
    while at < len(data):
        if data[at] == 0:
            found.append(None)
            at += 1
        else:
            found.append(data[at + 1:at + 33])
            at += 33
    return tuple(found)


def stands(key: DecisionKey, as_of: datetime) -> sql.Composable:
    """The SQL condition that the row's kept decision stands for a plan at `as_of` under `key`."""
    return sql.SQL(
        "decided_state IS NOT NULL AND decided_rules_digest = {} AND decided_catalog_digest = {} "
        "AND decided_as_of <= {at} AND (decided_until IS NULL OR {at} < decided_until)").format(
        sql.Literal(key.rules), sql.Literal(key.catalog), at=sql.Literal(as_of))


class KeptFactsReader:
    """One REPEATABLE READ, read-only snapshot of a range's kept facts and its streams' heads, so
    the facts read match the heads they were judged by."""

    def __init__(self, stores: Stores) -> None:
        self.stores = stores
        self.conn = stores.connect(purpose="read kept facts")
        self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        self.present = has_tables(self.conn, TABLE)
        self.decisions = self.present and has_decisions(self.conn)

    def close(self) -> None:
        self.conn.close()

    def heads_beside(self, where: sql.Composable, *, walk: bool = False) -> Callable[[], dict[str, int]]:
        """Each stream of the range and its head (`where` on originator_id; `walk`: eventlog/
        range_reads.stream_heads), read by the function returned, on a session of its own in this
        snapshot (`pg_export_snapshot`): another thread walks them while this session reads the
        kept rows. Call it before `close`."""
        row = self.conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        snapshot: str = row[0]

        def heads() -> dict[str, int]:
            with self.stores.connect(purpose="read kept facts") as conn:
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
                streaming_session(conn)
                return stream_heads(conn, where, walk=walk)
        return heads

    def kept(self, where: sql.Composable, key: DecisionKey | None = None, as_of: datetime | None = None
             ) -> dict[str, Kept]:
        """The kept rows of the range (`where` on account_id), without their facts; given `key` and
        `as_of`, with the kept result of each whose decision stands then (`stands`)."""
        if not self.present:
            return {}
        if key is None or as_of is None or not self.decisions:
            return {row[0]: Kept(*row) for row in self.conn.execute(sql.SQL(
                "SELECT account_id, stream_version, latest_source_time, fold_version FROM {} WHERE {}"
            ).format(sql.Identifier(TABLE), where))}
        found: dict[str, Kept] = {}
        with self.conn.cursor(binary=True) as cur:
            for account_id, version, latest, fold_version, decided_as_of, data, parked, rows in cur.execute(sql.SQL(
                    "SELECT account_id, stream_version, latest_source_time, fold_version, "
                    "CASE WHEN s THEN decided_as_of END, CASE WHEN s THEN decided_result END, "
                    "CASE WHEN s THEN decided_parked_digest END, CASE WHEN s THEN decided_rows_digest END "
                    "FROM (SELECT *, {} AS s FROM {} WHERE {}) k").format(
                    stands(key, as_of), sql.Identifier(TABLE), where)):
                result = None if data is None else Found(data, parked, decode_rows_digests(rows))
                found[account_id] = Kept(account_id, version, latest, fold_version, decided_as_of, result)
        return found

    def facts(self, order: sql.Composable, wanted: Sequence[str], as_of: datetime,
              key: DecisionKey | None = None) -> Iterator[tuple[str, bool, bytes]]:
        """The `wanted` accounts in account order (their facts stand), each with its kept decision
        when it stands at `as_of` under `key` (True, the state's bytes), else its facts (False,
        their bytes). Only the bytes used are read."""
        if not self.present or not wanted:
            return
        decided: sql.Composable = stands(key, as_of) if key is not None and self.decisions else sql.SQL("false")
        with self.conn.cursor() as cur, cur.copy(sql.SQL(
                "COPY (SELECT account_id, stands, CASE WHEN stands THEN {} ELSE facts END "
                "FROM (SELECT *, {} AS stands FROM {} WHERE account_id = ANY({})) k ORDER BY {}) "
                "TO STDOUT (FORMAT BINARY)"
        ).format(sql.Identifier("decided_state") if self.decisions else sql.SQL("NULL"), decided,
                 sql.Identifier(TABLE), sql.Literal(list(wanted)), order)) as copy:
            copy.set_types(["text", "bool", "bytea"])
            yield from copy.rows()


DECIDED = ("decided_state", "decided_as_of", "decided_until", "decided_rules_digest", "decided_catalog_digest",
           "decided_result", "decided_parked_digest", "decided_rows_digest")
FOUND = DECIDED[-3:]
_DECIDED = sql.SQL(", ").join(map(sql.Identifier, DECIDED))


def _set_decided(source: str) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL("{0} = {1}.{0}").format(sql.Identifier(c), sql.Identifier(source))
                              for c in DECIDED)


UPSERT = sql.SQL(
    "INSERT INTO {table} (account_id, stream_version, latest_source_time, fold_version, facts, {decided}) "
    "SELECT * FROM unnest(%b::text[], %b::integer[], %b::timestamptz[], %b::text[], %b::bytea[], "
    "%b::bytea[], %b::timestamptz[], %b::timestamptz[], %b::text[], %b::text[], %b::bytea[], %b::bytea[], %b::bytea[]) "
    "ON CONFLICT (account_id) DO UPDATE SET stream_version = EXCLUDED.stream_version, "
    "latest_source_time = EXCLUDED.latest_source_time, fold_version = EXCLUDED.fold_version, facts = EXCLUDED.facts, "
    "{set_decided} "  # new facts: the decision given with them, or none (an older one was not decided from them)
    # a slower plan that read the stream earlier must not put back older facts (a newer fold version always wins)
    "WHERE {table}.stream_version <= EXCLUDED.stream_version OR {table}.fold_version <> EXCLUDED.fold_version"
).format(table=sql.Identifier(TABLE), decided=_DECIDED, set_decided=_set_decided("excluded"))
# A new decision beside facts already kept: only while they are still the facts it was decided from.
DECIDE = sql.SQL(
    "UPDATE {table} t SET {set_decided} FROM unnest(%b::text[], %b::integer[], "
    "%b::bytea[], %b::timestamptz[], %b::timestamptz[], %b::text[], %b::text[], %b::bytea[], %b::bytea[], %b::bytea[]) "
    "AS d(account_id, stream_version, {decided}) "
    "WHERE t.account_id = d.account_id AND t.stream_version = d.stream_version AND t.fold_version = %s"
).format(table=sql.Identifier(TABLE), decided=_DECIDED, set_decided=_set_decided("d"))
# A result found from a decision that stood: only while that decision is still the one kept.
FIND = sql.SQL(
    "UPDATE {table} t SET {set_found} FROM unnest(%b::text[], %b::integer[], %b::timestamptz[], %b::text[], "
    "%b::text[], %b::bytea[], %b::bytea[], %b::bytea[]) "
    "AS d(account_id, stream_version, decided_as_of, decided_rules_digest, decided_catalog_digest, {found}) "
    "WHERE t.account_id = d.account_id AND t.stream_version = d.stream_version AND t.fold_version = %s "
    "AND t.decided_state IS NOT NULL AND t.decided_as_of = d.decided_as_of "
    "AND t.decided_rules_digest = d.decided_rules_digest AND t.decided_catalog_digest = d.decided_catalog_digest"
).format(table=sql.Identifier(TABLE), found=sql.SQL(", ").join(map(sql.Identifier, FOUND)),
         set_found=sql.SQL(", ").join(sql.SQL("{0} = d.{0}").format(sql.Identifier(c)) for c in FOUND))


def kept_accounts_sorted(conn: Connection) -> list[str]:
    """The accounts with kept facts, in code-point order (none when the table is not made yet)."""
    if not has_tables(conn, TABLE):
        return []
    return sorted(row[0] for row in conn.execute(sql.SQL("SELECT account_id FROM {}").format(sql.Identifier(TABLE))))


def has_decisions(conn: Connection) -> bool:
    """read_model_facts has the decided_* columns (a table made before them gets them from the
    next writing command's ensure_read_model; until then no decision is kept or read)."""
    return has_columns(conn, TABLE, *DECIDED)


def can_keep(conn: Connection) -> bool:
    """The table exists (a writing command made it: plan creates nothing) and this session may
    write it: not a standby, not a read-only default, and granted INSERT and UPDATE."""
    return has_tables(conn, TABLE) and has_decisions(conn) and may_write(conn, TABLE, "INSERT", "UPDATE")


def _found(found: Found | None) -> tuple[object, ...]:
    return (None,) * len(FOUND) if found is None else (found.data, found.parked, encode_rows_digests(found.rows))


def _decided(rows: Sequence[Keep]) -> list[list[object]]:
    """The decision columns of `rows`, one list a column (NULLs where a row has none)."""
    found = [(r.decision.state, r.decision.as_of, r.decision.until, r.decision.key.rules, r.decision.key.catalog,
              *_found(r.decision.found)) if r.decision else (None,) * len(DECIDED) for r in rows]
    return [list(column) for column in zip(*found, strict=True)] if found else [[] for _ in DECIDED]


# The kept bytes compressed with lz4 where the server has it (columns left at their default
# compression take the session's): measured on 5,000 accounts' facts and decisions (~10 KB of JSON
# an account), the upserts took 0.35-0.36 s against 0.59-0.62 s with pglz, the default.
FAST_COMPRESSION = ("SELECT set_config('default_toast_compression', 'lz4', true) FROM pg_settings "
                    "WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)")


def keep(conn: Connection, rows: Sequence[Keep]) -> None:
    """Upserts a batch of kept facts (with their decisions) and adds the decisions beside facts
    already kept, in one transaction, and commits it."""
    if not rows:
        return
    folded = [r for r in rows if r.facts is not None]
    decided = [r for r in rows if r.facts is None and r.decision is not None]
    found = [r for r in rows if r.facts is None and r.decision is None and r.found and r.result_for]
    with conn.transaction(), conn.cursor(binary=True) as cur:  # binary: the bytes go as bytes, not hex text
        cur.execute(FAST_COMPRESSION)
        if folded:
            cur.execute(UPSERT, ([r.account_id for r in folded], [r.stream_version for r in folded],
                                  [r.latest_source_time for r in folded], [FOLD_VERSION] * len(folded),
                                  [r.facts for r in folded], *_decided(folded)))
        if decided:
            cur.execute(DECIDE, ([r.account_id for r in decided], [r.stream_version for r in decided],
                                  *_decided(decided), FOLD_VERSION))
        if found:
            columns = [(r.account_id, r.stream_version, r.result_for[0], r.result_for[1].rules,
                        r.result_for[1].catalog, *_found(r.found)) for r in found if r.result_for]
            cur.execute(FIND, (*[list(c) for c in zip(*columns, strict=True)], FOLD_VERSION))
