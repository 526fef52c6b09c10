"""The projector's own tables, beside the event log in the event store database.

    ingest_row_digest        what ingestion last recorded of each legacy row (a digest), so an
                             unchanged row adds nothing and a vanished one adds its deletion
    ingest_checkpoint        each source's position, committed with the events it produced
    stripe_event_seen        every evt_ id recorded once, with a digest of its body (and every
                             object read from a list endpoint, as list:<id>), claimed in the
                             transaction that records what it produced (`claim_stripe_ids`)
    stripe_customer_account  which account a Stripe customer belongs to (from metadata.account_id;
                             NULL: none named yet, and objects wait for it)
    parked_record            rows and Stripe objects that could not be recorded, with the reason; a
                             Stripe object whose customer names no account yet waits (`waiting_for`
                             its customer) until a mapping arrives, then is recorded (`resolved_at`)
    apply_run                each `apply`: when, as of, rules (version and digest), what it found and did
    known_rules              each rules version an `apply` has used, with its digest and meaning: a
                             version names one meaning for good (domain/rules_identity.py)
    correction_audit         every correction `apply` meant to make (an intent) and what became of it
    outbox_event             outgoing domain events, published by the relay (projections/apply/protocol.py)
    legacy_table_blocked     legacy tables a reader found not matching the catalogue (ingestion/legacy/schema.py)
    cdc_stream_health        each legacy store's change stream as its reader last found it: broken (why,
                             since when) or read, and its tables read by snapshot meanwhile
                             (ingestion/legacy/cdc/keeper.py; `cdc status` and `status` show it)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import orjson
import psycopg
from psycopg.rows import tuple_row

from domain.rules import Rules
from domain.rules_identity import KnownRules, check_identity
from eventlog.account_log import open_log
from eventlog.stores import connect_to
from eventlog.tables_present import has_columns, has_tables

DDL = """
CREATE TABLE IF NOT EXISTS ingest_row_digest (
    store       text  NOT NULL,
    tbl         text  NOT NULL,
    key         text  NOT NULL,
    digest      bytea NOT NULL,
    parked      boolean NOT NULL DEFAULT false,
    stream      text,           -- the stream holding the row's last recorded version (NULL: never recorded)
    key_json    text NOT NULL,  -- the row's key as recorded, for its deletion event
    PRIMARY KEY (store, tbl, key)
);
-- the parked rows, which every plan range, backfill partition and follower step asks for
-- (eventlog/parked.parked_rows): without it each read every digest (3.2M rows at 100k accounts: 0.5 s)
CREATE INDEX IF NOT EXISTS ingest_row_digest_parked ON ingest_row_digest (store, tbl) WHERE parked;
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
CREATE TABLE IF NOT EXISTS apply_run (
    run_id        uuid PRIMARY KEY,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    as_of         timestamptz NOT NULL,
    rules_version text NOT NULL,
    summary       jsonb,
    rules_digest  text,                    -- Rules.digest (NULL: recorded before digests; see UPGRADES)
    plan_digest   text                     -- `apply --plan`: the saved plan's digest (NULL: apply's own plan)
);
CREATE TABLE IF NOT EXISTS correction_audit (
    id            bigserial PRIMARY KEY,
    run_id        uuid NOT NULL,
    account_id    text NOT NULL,
    store         text NOT NULL,
    tbl           text NOT NULL,           -- "store.table", as in cli.md
    op            text NOT NULL,           -- update | insert | delete
    key           jsonb NOT NULL,          -- JSON null for an insert into subs_customer
    col           text,
    from_value    jsonb NOT NULL,
    to_value      jsonb NOT NULL,
    sets          jsonb NOT NULL,          -- bookkeeping columns written with it (stage_since, source)
    rules_version text NOT NULL,
    as_of         timestamptz NOT NULL,
    causes        jsonb NOT NULL,          -- refs of the events that justified it
    event_id      uuid NOT NULL,           -- the outbox event that announces it
    status        text NOT NULL,           -- pending | applied | stale | abandoned
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    settled_at    timestamptz,             -- when it was applied (or found stale / abandoned)
    rules_digest  text,                    -- Rules.digest (NULL: recorded before digests; see UPGRADES)
    caused_at     timestamptz,             -- a follower's: when what caused it happened (NULL: apply's)
    plan_digest   text,                    -- the saved plan it came from (`apply --plan`), NULL otherwise
    write_xid     bigint,                  -- the legacy store's transaction that writes it, recorded before
                                           -- any write (NULL: none began): recovery asks whether it committed
    drift         jsonb                    -- where its drift came from (cli.md; NULL: not said)
);
CREATE INDEX IF NOT EXISTS correction_audit_account ON correction_audit (account_id, id);
CREATE INDEX IF NOT EXISTS correction_audit_event ON correction_audit (event_id);
CREATE INDEX IF NOT EXISTS correction_audit_pending ON correction_audit (id) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS outbox_event (
    event_id      uuid PRIMARY KEY,
    seq           bigserial UNIQUE,        -- publication order
    run_id        uuid NOT NULL,
    account_id    text NOT NULL,
    type          text NOT NULL,
    subject       text NOT NULL,
    status        text NOT NULL,           -- held | ready | sent | void
    body          jsonb,                   -- the published JSON, fixed when it becomes ready
    created_at    timestamptz NOT NULL DEFAULT now(),
    ready_at      timestamptz,
    sent_at       timestamptz,
    attempts      integer NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_event_ready ON outbox_event (seq) WHERE status = 'ready';
CREATE TABLE IF NOT EXISTS legacy_table_blocked (   -- a legacy table whose schema is not the one read
    tbl           text PRIMARY KEY,        -- "store.table"
    reason        text NOT NULL,           -- which columns, and why (ingestion/legacy/schema.py)
    since         timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS cdc_stream_health (
    store           text PRIMARY KEY,
    broken          text,                  -- why its stream cannot be read now (NULL: it is read)
    broken_since    timestamptz,
    snapshot_tables text[] NOT NULL DEFAULT '{}',  -- not in the publication (or no slot): read by snapshot
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS known_rules (
    version       text PRIMARY KEY,
    digest        text NOT NULL,
    rules         jsonb NOT NULL,          -- Rules.canonical_json(): what the version means
    first_run_id  uuid NOT NULL,
    first_used_at timestamptz NOT NULL DEFAULT now()
);
"""

# Columns added since a table was first made: (table, column, the statement that adds it to a store made
# before). Run only when the column is missing: ALTER TABLE takes an exclusive lock even with nothing to do.
UPGRADES = (
    ("apply_run", "rules_digest", "ALTER TABLE apply_run ADD COLUMN IF NOT EXISTS rules_digest text"),
    ("correction_audit", "rules_digest", "ALTER TABLE correction_audit ADD COLUMN IF NOT EXISTS rules_digest text"),
    ("correction_audit", "caused_at", "ALTER TABLE correction_audit ADD COLUMN IF NOT EXISTS caused_at timestamptz"),
    ("apply_run", "plan_digest", "ALTER TABLE apply_run ADD COLUMN IF NOT EXISTS plan_digest text"),
    ("correction_audit", "plan_digest", "ALTER TABLE correction_audit ADD COLUMN IF NOT EXISTS plan_digest text"),
    ("correction_audit", "write_xid", "ALTER TABLE correction_audit ADD COLUMN IF NOT EXISTS write_xid bigint"),
    ("parked_record", "given_up_at", "ALTER TABLE parked_record ADD COLUMN IF NOT EXISTS given_up_at timestamptz"),
    ("correction_audit", "drift", "ALTER TABLE correction_audit ADD COLUMN IF NOT EXISTS drift jsonb"),
    ("parked_record", "waiting_for", """
ALTER TABLE stripe_customer_account ALTER COLUMN account_id DROP NOT NULL;
ALTER TABLE parked_record ADD COLUMN IF NOT EXISTS waiting_for text;     -- a Stripe customer id
ALTER TABLE parked_record ADD COLUMN IF NOT EXISTS via text;             -- how the waiting object came
ALTER TABLE parked_record ADD COLUMN IF NOT EXISTS resolved_at timestamptz;
CREATE INDEX IF NOT EXISTS parked_record_waiting ON parked_record (waiting_for)
    WHERE waiting_for IS NOT NULL AND resolved_at IS NULL;
-- objects parked "belongs to no account" before they could wait: they wait from now on
UPDATE parked_record SET waiting_for = substring(reason FROM '^belongs to no account: customer (\\S+) has'),
       via = CASE WHEN position LIKE 'list@%' THEN 'list' ELSE 'events_api' END
 WHERE source = 'stripe' AND waiting_for IS NULL AND resolved_at IS NULL
   AND reason LIKE 'belongs to no account: customer % has%';
"""),
)

_LOCK_ID = 7_310_001  # an advisory lock so concurrent first runs don't race on CREATE


def ensure_own_schema(eventstore_dsn: str) -> None:
    """Creates the event table (through the library) and the projector's tables, once."""
    with connect_to(eventstore_dsn, purpose="schema", autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            open_log(eventstore_dsn, create_table=True).close()
            conn.execute(DDL)
            _upgrade(conn)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))


def upgrade_own_schema(eventstore_dsn: str) -> None:
    """For the commands that write nothing (plan, explain, status): creates no table, but brings the
    tables an earlier version made up to this version's columns, so that reading them works. A
    store already current (or not made yet) is one round trip (`_upgrades_due`), not a lock and
    two more per column."""
    with connect_to(eventstore_dsn, purpose="schema", autocommit=True) as conn:
        if not _upgrades_due(conn):
            return  # current, or nothing made yet: the first command that writes makes it all
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            _upgrade(conn)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))


def _upgrades_due(conn: psycopg.Connection) -> bool:
    """Our tables are made (parked_record is) and some table of UPGRADES lacks its column, in one
    round trip. Unlocked: a column once added stays, so "none due" cannot turn false meanwhile; when
    some is due, `_upgrade` looks again under the lock."""
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(
            "SELECT to_regclass('parked_record') IS NOT NULL AND NOT bool_and(to_regclass(u.tbl) IS NULL OR EXISTS "
            "(SELECT FROM pg_attribute a WHERE a.attrelid = to_regclass(u.tbl) AND a.attname = u.col "
            "AND NOT a.attisdropped)) FROM unnest(%b::text[], %b::text[]) u(tbl, col)",
            ([table for table, _, _ in UPGRADES], [column for _, column, _ in UPGRADES])).fetchone()
    return bool(row and row[0])


def _upgrade(conn: psycopg.Connection) -> None:
    for table, column, statement in UPGRADES:
        if has_tables(conn, table) and not has_columns(conn, table, column):
            conn.execute(statement)


@contextmanager
def exclusive_ingest(conn: psycopg.Connection, source: str) -> Iterator[None]:
    """One ingester at a time per source (a legacy table, or Stripe): a second run waits for the first.

    A session-level advisory lock on `conn`, so it holds across the run's many transactions."""
    conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"recompute.ingest:{source}",))
    conn.commit()
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"recompute.ingest:{source}",))
            conn.commit()


def save_checkpoint(conn: psycopg.Connection, source: str, position: dict[str, Any]) -> None:
    """A source's position, in the caller's transaction (with the events it produced)."""
    conn.execute(
        "INSERT INTO ingest_checkpoint (source, position) VALUES (%s, %s) "
        "ON CONFLICT (source) DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
        (source, orjson.dumps(position).decode()),
    )


def park(cur: psycopg.Cursor, source: str, records: Sequence[tuple[str, str, str, str | bytes, str]]) -> None:
    """Records that cannot be recorded as events, each (table, key, reason, record JSON, position)."""
    cur.executemany(
        "INSERT INTO parked_record (source, tbl, key, reason, record, position) VALUES (%s, %s, %s, %s, %s::jsonb, %s)",
        [(source, tbl, key, reason, raw.decode() if isinstance(raw, bytes) else raw, position)
         for tbl, key, reason, raw, position in records],
    )


def check_known_rules(conn: psycopg.Connection, rules: Rules) -> None:
    """Raises RulesConflict when rules.version is built in or was used by an earlier `apply` with
    another digest. Only reads, and a store without the table yet knows only the built-in rules."""
    if not has_tables(conn, "known_rules"):
        known = []
    else:
        known = [KnownRules(version, digest, str(run_id), at) for version, digest, run_id, at in conn.execute(
            "SELECT version, digest, first_run_id, first_used_at FROM known_rules WHERE version = %s",
            (rules.version,))]
    check_identity(rules, known)


def remember_rules(conn: psycopg.Connection, rules: Rules, run_id: str) -> None:
    """In the caller's transaction (with the run's apply_run row): the first run under a version fixes
    its meaning; later runs under it (checked first) add nothing."""
    conn.execute("INSERT INTO known_rules (version, digest, rules, first_run_id) VALUES (%s, %s, %s::jsonb, %s) "
                 "ON CONFLICT (version) DO NOTHING", (rules.version, rules.digest, rules.canonical_json(), run_id))


# -- Stripe: claims, customers and waiting objects (one transaction each, locks taken in this order:
#    the ids claimed, then the customers, then the log's table lock in append_events) --

def claim_stripe_ids(cur: psycopg.Cursor, claims: Sequence[tuple[str, bytes, object]], *,
                     changed_too: bool = False) -> set[str]:
    """Records (id, digest, created) as seen, in id order; returns the ids this transaction claimed.
    (Arrays go as binary parameters, %b: dumping 5,000 digests as text costs 300 ms, as binary 3 ms.)

    A concurrent transaction claiming one of the ids waits on the unique key until this one ends,
    and then claims nothing: however many deliveries race, one records the id. With `changed_too`
    (list:<id>), an id seen before with another digest is claimed again (the object changed)."""
    if not claims:
        return set()
    _send_claims(cur, claims, changed_too=changed_too)
    return {event_id for (event_id,) in cur}


def _send_claims(cur: psycopg.Cursor, claims: Sequence[tuple[str, bytes, object]], *, changed_too: bool) -> None:
    conflict = ("DO UPDATE SET digest = EXCLUDED.digest WHERE stripe_event_seen.digest <> EXCLUDED.digest"
                if changed_too else "DO NOTHING")
    ids, digests, created = zip(*claims, strict=True)
    cur.execute(
        "INSERT INTO stripe_event_seen (event_id, digest, created) "
        "SELECT * FROM unnest(%b::text[], %b::bytea[], %b::timestamptz[]) ORDER BY 1 "
        f"ON CONFLICT (event_id) {conflict} RETURNING event_id", (list(ids), list(digests), list(created)))


def claim_and_look_up(conn: psycopg.Connection, claims: Sequence[tuple[str, bytes, object]],
                      customer_ids: Sequence[str], *, changed_too: bool = False,
                      ) -> tuple[set[str], dict[str, bytes], dict[str, str]]:
    """`claim_stripe_ids`, then `seen_digests` of every id given (the claimed ones' are this
    transaction's; none with `changed_too`) and `customer_accounts` of `customer_ids`, sent together
    in psycopg's pipeline mode: one round trip where there were three. Each statement still sees
    what committed before it began, so an id another transaction claimed meanwhile has its digest."""
    if not claims:
        with conn.cursor() as cur:
            return set(), {}, customer_accounts(cur, customer_ids) if customer_ids else {}
    # Already in pipeline mode (serve's writer): reading the first result sends the three at once.
    # Else a pipeline of our own, whose end sends them. (Entering a nested one would first sync what
    # the caller queued: a round trip more.)
    sending = nullcontext() if conn.pgconn.pipeline_status else conn.pipeline()
    with conn.cursor() as claim, conn.cursor() as seen, conn.cursor() as named:
        with sending:
            _send_claims(claim, claims, changed_too=changed_too)
            if not changed_too:
                _send_seen(seen, [event_id for event_id, _, _ in claims])
            if customer_ids:
                _send_customers(named, customer_ids)
        claimed = {event_id for (event_id,) in claim}
        digests = {event_id: bytes(digest) for event_id, digest in seen} if not changed_too else {}
        accounts: dict[str, str] = dict(named.fetchall()) if customer_ids else {}
    return claimed, digests, accounts


def seen_digests(cur: psycopg.Cursor, ids: Sequence[str]) -> dict[str, bytes]:
    """The body digests recorded for these evt_ (or list:) ids (no round trip for none)."""
    if not ids:
        return {}
    _send_seen(cur, ids)
    return {event_id: bytes(digest) for event_id, digest in cur}


def _send_seen(cur: psycopg.Cursor, ids: Sequence[str]) -> None:
    cur.execute("SELECT event_id, digest FROM stripe_event_seen WHERE event_id = ANY(%b)", (list(ids),))


def customer_accounts(cur: psycopg.Cursor, customer_ids: Sequence[str] | None = None) -> dict[str, str]:
    """customer -> account, for these customers (None: all) that name one."""
    if customer_ids is None:
        cur.execute("SELECT customer_id, account_id FROM stripe_customer_account WHERE account_id IS NOT NULL")
    else:
        _send_customers(cur, customer_ids)
    return dict(cur.fetchall())


def _send_customers(cur: psycopg.Cursor, customer_ids: Sequence[str]) -> None:
    cur.execute("SELECT customer_id, account_id FROM stripe_customer_account "
                "WHERE account_id IS NOT NULL AND customer_id = ANY(%b)", (list(customer_ids),))


def lock_customers(cur: psycopg.Cursor, accounts: dict[str, str | None]) -> dict[str, str | None]:
    """Saves the mappings learned (customer -> account) and locks the row of every customer named
    (None: a customer whose objects are about to wait; its row is made if missing), in customer
    order; returns each one's account now. Whoever learns a customer's account and whoever parks
    an object waiting for it hold this row lock, so the learner always sees what waits."""
    if not accounts:
        return {}
    customers = sorted(accounts)
    cur.execute(
        "INSERT INTO stripe_customer_account (customer_id, account_id) "
        "SELECT * FROM unnest(%b::text[], %b::text[]) ORDER BY 1 ON CONFLICT (customer_id) "
        "DO UPDATE SET account_id = coalesce(EXCLUDED.account_id, stripe_customer_account.account_id) "
        "RETURNING customer_id, account_id", (customers, [accounts[c] for c in customers]))
    return dict(cur.fetchall())


def park_waiting(cur: psycopg.Cursor, source: str,
                 records: Sequence[tuple[str, str, str, str | bytes, str, str, str]]) -> None:
    """Objects that wait for their customer's account, each (table, key, reason, record JSON,
    position, customer id, via); the caller holds the customers' rows (`lock_customers`)."""
    cur.executemany(
        "INSERT INTO parked_record (source, tbl, key, reason, record, position, waiting_for, via) "
        "VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s, %s)",
        [(source, tbl, key, reason, raw.decode() if isinstance(raw, bytes) else raw, position, customer, via)
         for tbl, key, reason, raw, position, customer, via in records])


def resolve_waiting(cur: psycopg.Cursor, source: str, customer_ids: Sequence[str]) -> list[tuple[Any, ...]]:
    """Marks what waits for these customers as recorded; returns it, each (record, position, via,
    customer id), for the caller to record in this transaction."""
    if not customer_ids:
        return []
    cur.execute(
        "UPDATE parked_record SET resolved_at = now() WHERE source = %s AND waiting_for = ANY(%b) "
        "AND resolved_at IS NULL RETURNING record, position, via, waiting_for", (source, list(customer_ids)))
    return cur.fetchall()


def stop_waiting(cur: psycopg.Cursor, source: str, reasons: dict[str, str]) -> int:
    """What waits for these customers waits no more: parked with why (customer -> reason), no longer
    counted as waiting nor looked up (`given_up_at`), holding the customers' rows (`lock_customers`).
    Should a delivery ever name the customer's account, it is still recorded then (resolve_waiting).
    Returns how many records."""
    current = lock_customers(cur, dict.fromkeys(reasons))
    reasons = {customer: why for customer, why in reasons.items() if not current.get(customer)}  # named meanwhile
    if not reasons:
        return 0
    cur.execute(
        "UPDATE parked_record p SET given_up_at = now(), reason = u.reason FROM unnest(%b::text[], %b::text[]) "
        "AS u(customer, reason) WHERE p.source = %s AND p.waiting_for = u.customer AND p.resolved_at IS NULL "
        "AND p.given_up_at IS NULL", (list(reasons), list(reasons.values()), source))
    return cur.rowcount


def waiting_customers(conn: psycopg.Connection, source: str = "stripe") -> list[str]:
    """The customers that objects still wait for."""
    return [customer for (customer,) in conn.execute(
        "SELECT DISTINCT waiting_for FROM parked_record WHERE source = %s AND waiting_for IS NOT NULL "
        "AND resolved_at IS NULL AND given_up_at IS NULL ORDER BY 1", (source,))]


def count_waiting(conn: psycopg.Connection, source: str = "stripe") -> int:
    """How many Stripe objects still wait for their customer to name an account (for `ingest`, `status`)."""
    row = conn.execute("SELECT count(*) FROM parked_record WHERE source = %s AND waiting_for IS NOT NULL "
                       "AND resolved_at IS NULL AND given_up_at IS NULL", (source,)).fetchone()
    return row[0] if row else 0


# -- legacy tables blocked by their schema (ingestion/legacy/schema.py) ------------------------------------------

def record_block(conn: psycopg.Connection, table: str, reason: str) -> bool:
    """Records `table` ("store.table") as blocked, in the caller's transaction; True when it was not
    blocked for that reason already."""
    return conn.execute(
        "INSERT INTO legacy_table_blocked (tbl, reason) VALUES (%s, %s) ON CONFLICT (tbl) DO UPDATE "
        "SET reason = EXCLUDED.reason, since = now() WHERE legacy_table_blocked.reason <> EXCLUDED.reason "
        "RETURNING 1", (table, reason)).fetchone() is not None


def lift_block(conn: psycopg.Connection, table: str) -> bool:
    """The table matches again and was read again whole; True when it had been blocked."""
    return conn.execute("DELETE FROM legacy_table_blocked WHERE tbl = %s RETURNING 1", (table,)).fetchone() is not None


def recorded_blocks(conn: psycopg.Connection) -> dict[str, str]:
    """"store.table" -> why, of every block recorded and not lifted (none in a store made before them)."""
    if not has_tables(conn, "legacy_table_blocked"):
        return {}
    return dict(conn.execute("SELECT tbl, reason FROM legacy_table_blocked ORDER BY tbl").fetchall())
