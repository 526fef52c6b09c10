"""The kept projection's tables, in the event store database beside the log (issue 9).

    read_model_facts        per account: the facts the fold produced (they do not depend on the
                            rules), the stream version they reflect, the latest source time of an
                            event in them that the truth reads, and the fold's code version; and
                            the decision last made from them and what it found against the
                            live rows (decided_*: projections/evaluation/kept_facts.py)
    read_model_generation   a projection under one rules version + digest (blue/green): its rules
                            text, its T, its partition count; at most one is `active`
    read_model_partition    a partition of a generation that is built: committed with its states,
                            so a rerun (or a lost Dask worker's task) starts from what is done
    read_model_state        per generation and account: the true state, `next_action_at` (indexed:
                            the timer queue of `project --follow`), the stream version it reflects

Every write that changes what a reader sees (a partition's states and its row, the switch of the
active generation) commits in one transaction.
"""

from __future__ import annotations

import psycopg

from eventlog.tables_present import ddl_done

DDL = """
CREATE TABLE IF NOT EXISTS read_model_facts (
    account_id          text PRIMARY KEY,
    stream_version      integer NOT NULL,        -- the stream's head the facts reflect
    latest_source_time  timestamptz,             -- the latest source_time the truth reads (NULL: none)
    fold_version        text NOT NULL,           -- domain.fold.FOLD_VERSION when they were folded
    facts               bytea NOT NULL           -- orjson of AccountFacts, without the observed legacy rows
);
CREATE TABLE IF NOT EXISTS read_model_generation (
    id             bigserial PRIMARY KEY,
    rules_version  text NOT NULL,
    rules_digest   text NOT NULL,
    rules_text     text NOT NULL,                -- the rules as given (TOML), so the active rules can be read back
    as_of          timestamptz NOT NULL,         -- the T it was built at
    partitions     integer NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    built_at       timestamptz,                  -- every partition committed
    activated_at   timestamptz,
    active         boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX IF NOT EXISTS read_model_generation_one_active ON read_model_generation (active) WHERE active;
CREATE TABLE IF NOT EXISTS read_model_partition (
    generation   bigint  NOT NULL REFERENCES read_model_generation (id) ON DELETE CASCADE,
    partition    integer NOT NULL,
    accounts     integer NOT NULL,
    events       bigint  NOT NULL,
    position     bigint  NOT NULL,               -- the highest notification id of the log it reflects
    done_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (generation, partition)
);
CREATE TABLE IF NOT EXISTS read_model_state (
    generation      bigint  NOT NULL REFERENCES read_model_generation (id) ON DELETE CASCADE,
    account_id      text    NOT NULL,
    partition       integer NOT NULL,
    state           jsonb   NOT NULL,            -- TrueState as JSON
    next_action_at  timestamptz,
    stream_version  integer NOT NULL,
    as_of           timestamptz NOT NULL,        -- the T this state was computed at
    PRIMARY KEY (generation, account_id)
);
CREATE INDEX IF NOT EXISTS read_model_state_timer ON read_model_state (generation, next_action_at)
    WHERE next_action_at IS NOT NULL;
-- backfill: what a built partition found (orjson: its changes against the active rules, its
-- corrections against the legacy rows), committed with its states, so a resumed run reports it too
ALTER TABLE read_model_partition ADD COLUMN IF NOT EXISTS report bytea;
-- kept decisions beside the facts (projections/evaluation/kept_facts.py): the true state decided from them at decided_as_of,
-- standing until decided_until (NULL: ever) under those rules and that catalog
ALTER TABLE read_model_facts
    ADD COLUMN IF NOT EXISTS decided_state          bytea,        -- TrueState JSON (explain off)
    ADD COLUMN IF NOT EXISTS decided_as_of          timestamptz,
    ADD COLUMN IF NOT EXISTS decided_until          timestamptz,
    ADD COLUMN IF NOT EXISTS decided_rules_digest   text,         -- rules digest / DECIDED_BY
    ADD COLUMN IF NOT EXISTS decided_catalog_digest text;         -- the catalog folded at decided_as_of
-- kept results beside the decisions (projections/evaluation/kept_facts.py): what the diff and the hold found from the
-- decision, and what against: the account's parked rows and each legacy store's digest of its rows
ALTER TABLE read_model_facts
    ADD COLUMN IF NOT EXISTS decided_result         bytea,        -- orjson [exists, corrections, held]
    ADD COLUMN IF NOT EXISTS decided_parked_digest  bytea,        -- SHA-256 of the parked rows (NULL: none)
    ADD COLUMN IF NOT EXISTS decided_rows_digest    bytea;        -- per store: 0, or 1 and its SHA-256
-- kept drift (projections/drift.py): the account's corrections' drift origins, and the digest of
-- everything domain/drift.drift_origins read to say them (a plan on an unchanged log says them again)
ALTER TABLE read_model_facts
    ADD COLUMN IF NOT EXISTS drift_key              bytea,
    ADD COLUMN IF NOT EXISTS drift                  bytea;        -- orjson [Drift JSON], in the corrections' order
"""


def ensure_read_model(conn: psycopg.Connection) -> None:
    """Creates the tables if missing (idempotent; under an advisory lock, so concurrent first runs agree)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('recompute.read_model.ddl'))")
        if not ddl_done(conn, DDL):  # the DDL would lock the tables that running followers' steps use
            conn.execute(DDL)
