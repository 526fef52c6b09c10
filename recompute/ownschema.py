"""The projector's own tables, beside the event log in the event store database.

    ingest_row_digest        what ingestion last recorded of each legacy row (a digest), so an
                             unchanged row adds nothing and a vanished one adds its deletion
    ingest_checkpoint        each source's position, committed with the events it produced
    stripe_event_seen        every evt_ id recorded once, with a digest of its body
    stripe_customer_account  which account a Stripe customer belongs to (from metadata.account_id)
    parked_record            rows and Stripe objects that could not be recorded, with the reason
"""

from __future__ import annotations

import psycopg

from recompute.eventlog import open_log

DDL = """
CREATE TABLE IF NOT EXISTS ingest_row_digest (
    store       text  NOT NULL,
    tbl         text  NOT NULL,
    key         text  NOT NULL,
    digest      bytea NOT NULL,
    parked      boolean NOT NULL DEFAULT false,
    stream      text,           -- the account (or catalog) stream the row was recorded on
    key_json    text NOT NULL,  -- the row's key as recorded, for its deletion event
    PRIMARY KEY (store, tbl, key)
);
CREATE TABLE IF NOT EXISTS ingest_checkpoint (
    source      text PRIMARY KEY,
    position    jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS stripe_event_seen (
    event_id    text PRIMARY KEY,
    digest      bytea NOT NULL,
    created     timestamptz NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS stripe_customer_account (
    customer_id text PRIMARY KEY,
    account_id  text NOT NULL
);
CREATE TABLE IF NOT EXISTS parked_record (
    id          bigserial PRIMARY KEY,
    source      text NOT NULL,
    tbl         text NOT NULL,
    key         text NOT NULL,
    reason      text NOT NULL,
    record      jsonb,
    position    text NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS parked_record_source ON parked_record (source, tbl, key);
"""

_LOCK_ID = 7_310_001  # an advisory lock so concurrent first runs don't race on CREATE


def ensure_own_schema(eventstore_dsn: str) -> None:
    """Creates the event table (through the library) and the projector's tables, once."""
    with psycopg.connect(eventstore_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            open_log(eventstore_dsn, create_table=True).close()
            conn.execute(DDL)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
