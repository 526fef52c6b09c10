"""The legacy stores' rows by account, streamed, and the digests of them.

Each store is read with one `COPY ... TO STDOUT (FORMAT BINARY)` sorted by account (`COLLATE "C"`,
the order Python compares strings in), and `by_account` merges them with the log's streams
(eventlog/range_reads.py), so memory holds one account's events and rows at a time however large
the fleet. The legacy tables have no index on `account_id` (we don't change their schema), so one
sorted scan per database beats a query per account or per chunk.

For kept results (projections/evaluation/kept.py) each store also makes a digest of every
account's compared rows (ROWS_DIGEST): first each store says which of the given accounts' digests
changed (one aggregate, no rows sent), then the rows of the others are streamed, in the same
snapshot of the store.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any, TypeVar

import orjson
from psycopg import sql

from domain.legacy_tables import COMPARED_BY_STORE
from eventlog.account_range import AccountRange, among, array_text
from eventlog.range_reads import order, streaming_session
from eventlog.stores import Stores
from ingestion.legacy.schema import table_columns

P = TypeVar("P")
# An account's legacy rows by "store.table".
Rows = dict[str, list[dict[str, Any]]]
# Per legacy store (in COMPARED_BY_STORE's order), the digest it made of the account's rows (None: it has none).
RowsDigests = tuple[bytes | None, ...]


def legacy_rows(stores: Stores, store: str, accounts: AccountRange, *, unblocked: bool = False
                ) -> Iterator[tuple[str, Rows, bytes | None]]:
    """(account_id, {"store.table": rows}, None) for every compared table of one store, sorted by
    account. `unblocked`: the caller has just seen no table of the store blocked (every compared
    table has its account column), so the store's columns are not looked up again."""
    snapshot = StoreSnapshot(stores, store, unblocked=unblocked)
    try:
        yield from snapshot.rows(accounts)
    finally:
        snapshot.close()


def every_store(stores: Stores, accounts: AccountRange) -> list[Iterator[tuple[str, Rows, bytes | None]]]:
    """`legacy_rows` of each compared store (by_account's `legacy`)."""
    return [legacy_rows(stores, store, accounts) for store in COMPARED_BY_STORE]


class StoreSnapshot:
    """One legacy store read in one REPEATABLE READ, read-only snapshot: which kept digests of its
    rows changed (`changed`), then the rows (`rows`), so the two agree.

    ROWS_DIGEST, per account: SHA-256 of the store's shape (its compared tables' columns with their
    types, and the session settings that shape row_to_json's text), then the account's rows, each
    a byte naming its table and `record_send` of the row (the binary form: every column's type
    and value, length-prefixed, so the concatenation parses one way), in byte order. Equal digests:
    the same rows, so the same JSON the plan would read (TimeZone is set to UTC here), and the same
    corrections; any update, insert or delete of a compared row changes it. Binary, not
    row_to_json: measured ~4x less server time a row (invoices: ~0.19 s against ~0.8 s for 60k rows)."""

    def __init__(self, stores: Stores, store: str, *, unblocked: bool = False) -> None:
        self.store = store
        self.conn = stores.connect(store, purpose=f"read {store}")
        self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        self.collate = streaming_session(self.conn)
        # a table that lost its account column (a blocked table: ingestion/legacy/schema.py) cannot be
        # read by account; its rows are left out, and no correction of it is planned anyway
        # (`unblocked`: a follower's step has just seen none blocked: ~5% of its step saved)
        keyed = set(COMPARED_BY_STORE[store]) if unblocked else {
            table for table, columns in table_columns(self.conn, list(COMPARED_BY_STORE[store])).items()
            if "account_id" in columns}
        self.tables = tuple(table for table in COMPARED_BY_STORE[store] if table in keyed)

    def close(self) -> None:
        self.conn.close()

    def _union(self, accounts: AccountRange, columns: sql.SQL, skip: Sequence[str] = (),
               only: Sequence[str] | None = None) -> sql.Composable:
        where = accounts.where("account_id", collate=self.collate)
        if only is not None:
            where = sql.SQL("{} AND {}").format(where, among(sql.Identifier("account_id"), only))
        elif skip:
            where = sql.SQL("{} AND NOT {}").format(where, among(sql.Identifier("account_id"), skip))
        return sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT account_id, {} FROM {} t WHERE {}").format(
                columns.format(tbl=sql.Literal(f"{self.store}.{table}"), tag=sql.Literal(bytes([i]))),
                sql.Identifier(table), where)
            for i, table in enumerate(self.tables))

    def _digest(self, presorted: bool = False) -> sql.Composable:
        """ROWS_DIGEST over the group's `r` (the shape is one initplan a query). `presorted`: the
        input comes sorted by account and `r`, so the aggregate does not sort each group again
        (measured ~10-15% of `changed`'s server time on billing_prod and subs at 10k accounts).
        PostgreSQL keeps a sorted subquery's order into an aggregate without saying it must; were
        it ever not kept, the digests would differ from those `rows` makes, and those accounts'
        rows be read again: never a digest equal for other rows."""
        shape = sql.SQL(
            "(SELECT convert_to(concat_ws('|', current_setting('TimeZone'), current_setting('extra_float_digits'), "
            "current_setting('DateStyle'), current_setting('IntervalStyle'), current_setting('bytea_output'), "
            "string_agg(c.relname || '.' || a.attname || ':' || a.atttypid || ':' || a.atttypmod, ',' "
            "ORDER BY c.relname, a.attnum)), 'UTF8') FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "WHERE a.attrelid = ANY(ARRAY[{}]::regclass[]) AND a.attnum > 0 AND NOT a.attisdropped)").format(
            sql.SQL(", ").join(sql.Literal(table) for table in self.tables))
        return sql.SQL("sha256({} || string_agg(r, ''::bytea{}))").format(
            shape, sql.SQL("" if presorted else " ORDER BY r"))

    def changed(self, accounts: AccountRange, given: Mapping[str, bytes | None]) -> set[str]:
        """The accounts of `given` (account -> the digest kept of its rows here, None: it had none)
        whose digest is not that now."""
        ids = list(given)
        if not self.tables:  # none readable: every account that had rows here has none now
            return {account for account, digest in given.items() if digest is not None}
        digests = [d.hex() if (d := given[a]) is not None else "" for a in ids]  # none: '' (no digest is empty)
        query = sql.SQL(  # no parameters: an id may hold a %, which psycopg would take for one
            "SELECT g.account_id FROM unnest({}::text[], {}::text[]) AS g(account_id, digest) LEFT JOIN "
            "(SELECT account_id, {} AS digest FROM ({} ORDER BY account_id, r) u GROUP BY account_id) d "
            "ON d.account_id = g.account_id WHERE d.digest IS DISTINCT FROM decode(nullif(g.digest, ''), 'hex')").format(
            sql.Literal(array_text(ids)), sql.Literal(array_text(digests)),
            self._digest(presorted=True), self._union(accounts, sql.SQL("{tag}::bytea || record_send(t) AS r")))
        with self.conn.cursor(binary=True) as cur:
            return {row[0] for row in cur.execute(query)}

    def rows(self, accounts: AccountRange, skip: Sequence[str] = (), digests: bool = False,
             only: Sequence[str] | None = None) -> Iterator[tuple[str, Rows, bytes | None]]:
        """(account_id, {"store.table": rows}, ROWS_DIGEST or None) of every account of the range
        with rows here but those of `skip` (or, given `only`, of those of `only` alone: none read
        when it is empty), sorted by account.

        One row per account (`json_agg`), not per legacy row: psycopg's per-row cost was most of what
        reading the stores took in Python (measured on 10,000 accounts: 221k rows -> 10k)."""
        if not self.tables or (only is not None and not only):
            return
        columns = sql.SQL("{tbl} AS tbl, row_to_json(t) AS row" + (", {tag}::bytea || record_send(t) AS r"
                                                                    if digests else ""))
        query = sql.SQL("COPY (SELECT account_id, json_agg(json_build_array(tbl, row))::text, {} FROM ({}) u "
                        "GROUP BY account_id ORDER BY {}) TO STDOUT (FORMAT BINARY)").format(
            self._digest() if digests else sql.SQL("NULL::bytea"), self._union(accounts, columns, skip, only),
            order("account_id", self.collate))
        with self.conn.cursor() as cur, cur.copy(query) as copy:
            copy.set_types(["text", "bytea", "bytea"])
            for account_id, document, digest in copy.rows():
                rows: Rows = {}
                for table, row in orjson.loads(document):
                    rows.setdefault(table, []).append(row)
                yield account_id, rows, digest


def by_account(
    events: Iterator[tuple[str, P]], legacy: Sequence[Iterator[tuple[str, Rows, bytes | None]]]
) -> Iterator[tuple[str, P, Rows, RowsDigests]]:
    """Each account of the log with its events (or what stands for them), its current legacy rows
    by "store.table" and each store's digest of them (None: no rows there, or none made); `legacy`
    is one iterator per store, each sorted by account."""
    merged = heapq.merge(*(_numbered(i, store) for i, store in enumerate(legacy)), key=itemgetter(0, 1))
    pending = next(merged, None)
    for account_id, account_events_ in events:
        rows: Rows = {}
        digests: list[bytes | None] = [None] * len(legacy)
        while pending is not None and pending[0] < account_id:
            pending = next(merged, None)  # rows of an account the log does not know (parked): not ours
        while pending is not None and pending[0] == account_id:
            rows.update(pending[2])
            digests[pending[1]] = pending[3]
            pending = next(merged, None)
        yield account_id, account_events_, rows, tuple(digests)


def _numbered(i: int, store: Iterator[tuple[str, Rows, bytes | None]]) -> Iterator[tuple[str, int, Rows, bytes | None]]:
    for account_id, rows, digest in store:
        yield account_id, i, rows, digest
