"""A legacy table whose schema changes under a running follower (issue 18, defects 1 and 2): a
column recompute compares, writes or keys is renamed, dropped or given another type, by snapshot
ingest and by change stream. The follower keeps going; the table is blocked (its rows not decoded,
nothing of it planned or written, no event announced for it), and says why; once the schema is
restored, the table is read again and everything converges."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import pytest

from domain.rules import RULES_V1
from eventlog.own_tables import ensure_own_schema
from eventlog.stores import Stores
from ingestion.legacy.cdc.setup import setup_store
from ingestion.legacy.schema import blocked_tables
from ingestion.legacy.snapshot import LegacySnapshotIngester
from projections.follow.follower import Follower
from projections.follow.loop import catch_up
from projections.plan import plan
from tests.support.cdc import a_stream
from tests.support.follow import a_calm_world, an_overdue_invoice, dunning_stage
from tests.support.legacy import execute

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Change:
    store: str
    table: str  # "store.table" blocked by it
    breaks: str
    restores: str
    why: str  # what the block says
    touch: str  # a change of the table after it broke (so a stream gets its Relation message)


CHANGES = {
    "compared column renamed": Change(
        "subs", "subs.subs_account", "ALTER TABLE subs_account RENAME delinquent TO is_delinquent",
        "ALTER TABLE subs_account RENAME is_delinquent TO delinquent", "delinquent: no such column",
        "UPDATE subs_account SET billing_email = 'new@b.c' WHERE account_id = 'acc_000002'"),
    "compared column turned text": Change(
        "subs", "subs.subs_account", "ALTER TABLE subs_account ALTER delinquent DROP DEFAULT, "
        "ALTER delinquent TYPE text USING delinquent::text",
        "ALTER TABLE subs_account ALTER delinquent TYPE boolean USING delinquent::boolean, "
        "ALTER delinquent SET DEFAULT false", "delinquent: text, expected boolean",
        "UPDATE subs_account SET billing_email = 'new@b.c' WHERE account_id = 'acc_000002'"),
    "written column dropped": Change(
        "subs", "subs.subs_dunning", "ALTER TABLE subs_dunning DROP COLUMN stage",
        "ALTER TABLE subs_dunning ADD COLUMN stage text NOT NULL DEFAULT 'none'", "stage: no such column",
        "INSERT INTO subs_dunning (account_id, attempt_count, updated_at) VALUES ('acc_000006', 0, now())"),
    "bookkeeping column renamed": Change(
        "billing_prod", "billing_prod.dunning", "ALTER TABLE dunning RENAME stage_since TO since",
        "ALTER TABLE dunning RENAME since TO stage_since", "stage_since: no such column",
        "INSERT INTO dunning (account_id, stage, updated_at) VALUES ('acc_000006', 'none', now())"),
    "key column renamed": Change(
        "subs", "subs.subs_dunning", "ALTER TABLE subs_dunning RENAME account_id TO acct",
        "ALTER TABLE subs_dunning RENAME acct TO account_id", "account_id: no such column",
        "INSERT INTO subs_dunning (acct, stage, attempt_count, updated_at) VALUES ('acc_000006', 'none', 0, now())"),
    "plan column renamed (the truth reads it)": Change(
        "cf_prod", "cf_prod.accounts", "ALTER TABLE accounts RENAME plan TO tier",
        "ALTER TABLE accounts RENAME tier TO plan", "plan: no such column",
        "UPDATE accounts SET name = 'Acme 2' WHERE account_id = 'acc_000002'"),
    "money column turned numeric": Change(
        "billing_prod", "billing_prod.invoices", "ALTER TABLE invoices ALTER amount_paid TYPE numeric",
        "ALTER TABLE invoices ALTER amount_paid TYPE bigint", "amount_paid: numeric, expected bigint",
        "SELECT 1"),  # the overdue invoice itself comes after the change
}


def audit(dsns, table: str | None = None) -> list[tuple]:
    with psycopg.connect(dsns["eventstore"]) as conn:
        return conn.execute("SELECT account_id, tbl, col, from_value::text, to_value::text, status "
                            "FROM correction_audit WHERE %s::text IS NULL OR tbl = %s ORDER BY id",
                            (table, table)).fetchall()


def outbox(dsns) -> list[tuple]:
    with psycopg.connect(dsns["eventstore"]) as conn:
        return conn.execute("SELECT account_id, type, status, body::text FROM outbox_event ORDER BY seq").fetchall()


def corrections_left(dsns) -> list:
    return plan(Stores.from_dsns(dsns), RULES_V1, datetime.now(UTC), workers=1).corrections


class Ingest:
    """The legacy stores read as `project` reads them: by snapshot, or each by its change stream."""

    def __init__(self, dsns, via: str, stack) -> None:
        self.dsns, self.via = dsns, via
        self.streams = {}
        if via == "stream":
            for store in ("cf_prod", "billing_prod", "subs"):
                setup_store(store, Stores.from_dsns(dsns))
                self.streams[store] = stack.enter_context(a_stream(dsns, store))

    def run(self, until=lambda: True, limit: float = 30.0) -> None:
        deadline = time.monotonic() + limit
        while True:
            if self.via == "snapshot":
                for store in ("cf_prod", "billing_prod", "subs"):
                    LegacySnapshotIngester(store=store, stores=Stores.from_dsns(self.dsns)).run()
            else:
                for stream in self.streams.values():
                    stream.catch_up()
            if until() or time.monotonic() > deadline:
                return
            time.sleep(0.2)


def recorded_block(dsns, table: str) -> str | None:
    with psycopg.connect(dsns["eventstore"]) as conn:
        row = conn.execute("SELECT reason FROM legacy_table_blocked WHERE tbl = %s", (table,)).fetchone()
    return row and row[0]


@pytest.mark.parametrize("via", ["snapshot", "stream"])
@pytest.mark.parametrize("name", list(CHANGES))
def test_a_table_whose_schema_changes_is_blocked_while_the_follower_goes_on_and_converges_once_restored(
        stores, via, name):
    from contextlib import ExitStack

    change = CHANGES[name]
    accounts = a_calm_world(stores, accounts=8)
    ensure_own_schema(stores["eventstore"])
    with ExitStack() as stack:
        ingest = Ingest(stores, via, stack)
        ingest.run()
        follower = Follower(Stores.from_dsns(stores), RULES_V1, lease_s=2.0)
        stack.callback(follower.close)
        assert sum(r.applied for r in catch_up(follower)) == 0

        execute(stores[change.store], change.breaks)
        execute(stores[change.store], change.touch)
        overdue = an_overdue_invoice(stores, accounts[3], days=5)  # retrying: every table has something to fix
        ingest.run(until=lambda: recorded_block(stores, change.table) is not None)
        assert change.why in (recorded_block(stores, change.table) or "")  # the reader saw it, and says why
        assert change.why in blocked_tables(Stores.from_dsns(stores))[change.table]

        catch_up(follower)  # goes on: no exception, nothing written to the blocked table
        assert audit(stores, change.table) == []
        if change.table in ("billing_prod.invoices", "cf_prod.accounts"):  # the truth reads it: nothing corrected
            assert audit(stores) == []
        assert not any(change.table in (body or "") for *_, body in outbox(stores))
        assert all(status in ("applied",) for *_, status in audit(stores))  # nothing recorded stale or pending
        held = plan(Stores.from_dsns(stores), RULES_V1, datetime.now(UTC), workers=1)
        assert held.blocked[change.table].startswith(change.why.split(":")[0])
        assert all(c.table != change.table for c in held.corrections)

        execute(stores[change.store], change.restores)
        ingest.run(until=lambda: recorded_block(stores, change.table) is None
                   and change.table not in blocked_tables(Stores.from_dsns(stores)))
        assert recorded_block(stores, change.table) is None
        catch_up(follower)
        ingest.run()  # the follower's own writes come back
        catch_up(follower)
        assert corrections_left(stores) == []
        assert dunning_stage(stores, accounts[3]) == "retrying"
        with psycopg.connect(stores["subs"]) as conn:
            assert conn.execute("SELECT delinquent FROM subs_account WHERE account_id = %s",
                                (accounts[3],)).fetchone()[0] is True
        assert all(status == "applied" for *_, status in audit(stores))
        assert overdue


def test_a_follower_goes_on_and_writes_nothing_of_a_table_whose_compared_column_was_renamed(stores):
    """Defect 1 as found: `delinquent` renamed under a running follower, then a row of the table
    changed. The follower planned `delinquent null -> false` for every account from the missing
    column, its write failed (`column "delinquent" does not exist`) and it died."""
    accounts = a_calm_world(stores, accounts=5)
    ensure_own_schema(stores["eventstore"])
    ingest = Ingest(stores, "snapshot", None)
    ingest.run()
    follower = Follower(Stores.from_dsns(stores), RULES_V1, lease_s=2.0)
    try:
        catch_up(follower)
        execute(stores["subs"], "ALTER TABLE subs_account RENAME delinquent TO is_delinquent")
        execute(stores["subs"], "UPDATE subs_account SET billing_email = 'new@b.c'")
        ingest.run()
        catch_up(follower)  # no exception
        assert audit(stores) == [] and outbox(stores) == []
        assert corrections_left(stores) == []  # not 5 of 5 accounts disagreeing with "from": null
        assert accounts
    finally:
        follower.close()
