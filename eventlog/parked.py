"""The rows ingest parked (its own tables `ingest_row_digest` and `parked_record`), read by account.

    parked_rows(stores, accounts)      the held rows of a range: one query per range
    parked_records(conn, account)      every parked record of one account, for explain (on its connection)
"""

from __future__ import annotations

import orjson
from psycopg import sql

from domain.diff import WRITABLE
from domain.held import HeldRow, ParkedRecord
from eventlog.account_range import AccountRange, among
from eventlog.stores import Connection, Stores
from eventlog.tables_present import has_tables


def parked_rows(stores: Stores, accounts: AccountRange) -> dict[str, list[HeldRow]]:
    """The rows of `accounts` whose latest version ingest parked, by account: one query per range.

    A row is parked as long as its digest says so (`ingest_row_digest.parked`); its reason and
    time are those of its latest parked record. Only tables a correction can touch count. The
    account is the one the parked row names (else the stream of its last recorded version)."""
    found: dict[str, list[HeldRow]] = {}
    with stores.connect(purpose="read parked rows") as conn:
        if not has_tables(conn, "ingest_row_digest", "parked_record"):
            return found  # nothing ingested yet: nothing parked
        query = sql.SQL(
            "SELECT account_id, tbl, key_json, reason, parked_at FROM ("
            " SELECT coalesce(nullif(btrim(p.record->>'account_id'), ''), d.stream) AS account_id,"
            " d.store || '.' || d.tbl AS tbl, d.key_json, p.reason, p.parked_at"
            " FROM ingest_row_digest d CROSS JOIN LATERAL ("
            "  SELECT reason, parked_at, record FROM parked_record p"
            "  WHERE p.source = d.store AND p.tbl = d.tbl AND p.key = d.key ORDER BY p.id DESC LIMIT 1) p"
            " WHERE d.parked AND {}) h "
            "WHERE account_id IS NOT NULL AND {} ORDER BY 1, 2, 3"  # no parameters: an id may hold a %
        ).format(among(sql.SQL("d.store || '.' || d.tbl"), sorted(WRITABLE)), accounts.where("account_id"))
        for account_id, table, key_json, reason, parked_at in conn.execute(query):
            found.setdefault(account_id, []).append(HeldRow(
                account_id=account_id, table=table, key=orjson.loads(key_json), reason=reason, parked_at=parked_at))
    return found


def parked_records(conn: Connection, account_id: str) -> list[ParkedRecord]:
    """Every record of one account that ingest parked, oldest first; `held` when it is the latest
    version of its row (as in `parked_rows`). Legacy rows by the account they name (or the stream of
    their last recorded version); Stripe objects by the account of their customer. On the caller's
    connection to the event store (explain reads the audit on it too)."""
    if not has_tables(conn, "ingest_row_digest", "parked_record", "stripe_customer_account"):
        return []
    rows = conn.execute(
        "SELECT p.source, p.source || '.' || p.tbl, coalesce(d.key_json, json_build_object('key', p.key)::text),"
        " p.reason, p.record::text, p.position, p.parked_at,"
        " coalesce(d.parked AND p.id = (SELECT max(q.id) FROM parked_record q"
        "  WHERE q.source = p.source AND q.tbl = p.tbl AND q.key = p.key), false)"
        " FROM parked_record p LEFT JOIN ingest_row_digest d"
        "  ON p.source <> 'stripe' AND d.store = p.source AND d.tbl = p.tbl AND d.key = p.key"
        " WHERE p.resolved_at IS NULL AND ("  # resolved: a waiting Stripe object since recorded
        " (p.source <> 'stripe' AND (btrim(p.record->>'account_id') = %(account)s OR d.stream = %(account)s))"
        " OR (p.source = 'stripe' AND coalesce(p.record->'data'->'object'->>'customer', p.record->>'customer')"
        "  IN (SELECT customer_id FROM stripe_customer_account WHERE account_id = %(account)s)))"
        " ORDER BY p.id", {"account": account_id}).fetchall()
    return [ParkedRecord(source=source, table=table, key=orjson.loads(key), reason=reason,
                         record=orjson.loads(record) if record is not None else None, position=position,
                         parked_at=parked_at, held=held)
            for source, table, key, reason, record, position, parked_at, held in rows]
