"""The legacy writer's statements, run on a generated fleet's stores: each correction writes exactly
its row once (compare-and-set), only its column and the bookkeeping rules-v1 §3 names, and never a
manual entitlement. (What it refuses to express is tested without a database: tests/unit.)"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import sql

from domain.diff import WRITABLE, Correction
from projections.apply.cas_sql import SPECS, probe, statement
from simulation.fleet import build_fleet
from simulation.harness.databases import STORES, scratch_databases

NOW = datetime(2026, 3, 1, tzinfo=UTC)
STAGE_SINCE = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def drifted(tmp_path_factory):
    """300 accounts of which 40 drift (seed 7): their stores, and the corrections that undo the drift."""
    with scratch_databases(*STORES) as dsns:
        manifest = build_fleet(dsns, accounts=300, seed=7, drifting=40, now=NOW,
                               stripe_dir=tmp_path_factory.mktemp("stripe"))
        yield dsns, [Correction.model_validate(c) for c in manifest.expected_corrections]


def bookkeeping(c: Correction) -> dict:
    return {"stage_since": STAGE_SINCE} if c.table == "billing_prod.dunning" and c.op == "update" else {}


def the_row(conn: psycopg.Connection, c: Correction) -> dict | None:
    spec = SPECS[c.table]
    key = c.key or {"account_id": c.account_id}
    where = sql.SQL(" AND ").join(sql.SQL("{}::text = %s").format(sql.Identifier(k)) for k in key)
    rows = conn.execute(sql.SQL("SELECT to_jsonb(t) FROM {} t WHERE {}").format(sql.Identifier(spec.name), where),
                        [str(v) for v in key.values()]).fetchall()
    assert len(rows) <= 1, f"{c.table} {key}: more than one row"
    return rows[0][0] if rows else None


def held(conn: psycopg.Connection, c: Correction) -> bool:
    query, params = probe(c)
    return conn.execute(query, params).fetchone() is not None


def write(conn: psycopg.Connection, c: Correction) -> int:
    query, params = statement(c, bookkeeping(c))
    return conn.execute(query, params).rowcount


def test_every_correction_of_a_generated_fleet_writes_its_row_once_and_only_its_column(drifted):
    dsns, corrections = drifted
    assert {(c.table, c.column) for c in corrections if c.op == "update"} == {
        (table, column) for table, columns in WRITABLE.items() for column in columns}, "every writable column drifts"
    assert {c.op for c in corrections} == {"update", "insert", "delete"}
    for c in corrections:
        store = c.table.split(".")[0]
        with psycopg.connect(dsns[store], options="-c TimeZone=UTC") as conn:
            before = the_row(conn, c)
            if c.op == "delete":  # the manifest names what differs; a plan's delete carries the row as read
                c = c.model_copy(update={"from_": before})
            assert not held(conn, c), f"{c}: the store already holds it"
            assert write(conn, c) == 1, f"{c}: not exactly one row written"
            assert held(conn, c), f"{c}: the probe does not see what was written"
            assert write(conn, c) == 0, f"{c}: written twice (the compare-and-set did not hold)"
            after = the_row(conn, c)
            conn.rollback()  # each correction against the fleet as built
        spec = SPECS[c.table]
        if c.op == "update":
            changed = {k for k in after if after[k] != before[k]}
            assert c.column in changed and changed <= {c.column, *bookkeeping(c), *filter(None, [spec.stamp])}, c
            assert all(after[name] == STAGE_SINCE.isoformat() for name in bookkeeping(c)), c
        elif c.op == "delete":
            assert before is not None and after is None, c
        else:
            assert before is None and after is not None and after[spec.new_row_stamp] is not None, c


def test_an_update_of_a_row_that_no_longer_holds_its_from_value_writes_nothing(drifted):
    dsns, corrections = drifted
    c = next(c for c in corrections if c.op == "update")
    stale = c.model_copy(update={"from_": "not what the row holds" if isinstance(c.from_, str) else -1})
    with psycopg.connect(dsns[c.table.split(".")[0]], options="-c TimeZone=UTC") as conn:
        before = the_row(conn, c)
        assert write(conn, stale) == 0 and the_row(conn, c) == before


def test_an_entitlement_update_never_touches_a_manual_row(drifted):
    dsns, _ = drifted
    with psycopg.connect(dsns["cf_prod"], options="-c TimeZone=UTC") as conn:
        account, feature, enabled = conn.execute(
            "UPDATE entitlements SET source = 'manual' WHERE (account_id, feature) = "
            "(SELECT account_id, feature FROM entitlements ORDER BY 1, 2 LIMIT 1) "
            "RETURNING account_id, feature, enabled").fetchone()
        c = Correction(account_id=account, table="cf_prod.entitlements", op="update",
                       key={"account_id": account, "feature": feature}, column="enabled", from_=enabled, to=not enabled)
        before = the_row(conn, c)
        assert write(conn, c) == 0 and the_row(conn, c) == before
        conn.rollback()


def test_a_customer_mapping_is_inserted_only_while_the_account_has_none_and_a_delete_takes_the_row_as_seen(drifted):
    dsns, _ = drifted
    with psycopg.connect(dsns["subs"], options="-c TimeZone=UTC") as conn:
        account = conn.execute("SELECT account_id FROM subs_account ORDER BY 1 LIMIT 1").fetchone()[0]
        conn.execute("DELETE FROM subs_customer WHERE account_id = %s", (account,))
        mapping = Correction(account_id=account, table="subs.subs_customer", op="insert", key=None, column=None,
                             from_=None, to={"account_id": account, "stripe_customer_id": "cus_1", "source": "setup"})
        assert write(conn, mapping) == 1 and write(conn, mapping) == 0
        row = the_row(conn, mapping)
        assert row["created_at"] is not None and row["stripe_customer_id"] == "cus_1"
        changed = Correction(account_id=account, table="subs.subs_customer", op="delete", key={"id": row["id"]},
                             column=None, from_={**row, "source": "checkout"}, to=None)
        assert write(conn, changed) == 0, "a row that changed since it was seen is not deleted"
        seen = changed.model_copy(update={"from_": row})
        assert write(conn, seen) == 1 and the_row(conn, mapping) is None
        conn.rollback()
