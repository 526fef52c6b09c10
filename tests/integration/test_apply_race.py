"""A legacy writer racing `apply` is never overwritten: the row is left as the writer left it,
counted stale, and corrected by the next run if it is still wrong."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from domain.rules import RULES_V1
from eventlog.own_tables import ensure_own_schema
from eventlog.stores import Stores
from projections.apply.protocol import ApplyBusy, ApplyOptions, apply
from projections.plan import plan
from simulation.harness.apply_fleet import NOW

pytestmark = pytest.mark.integration
STAGES = ("grace", "retrying", "final_notice", "suspended")


def one(corrections, table, op, column=None):
    return next(c for c in corrections if c.table == table and c.op == op and (column is None or c.column == column))


def statuses(eventstore, account_id):
    with psycopg.connect(eventstore) as conn:
        return conn.execute("SELECT tbl, op, col, status FROM correction_audit WHERE account_id = %s ORDER BY id",
                            (account_id,)).fetchall()


def test_a_writer_that_commits_while_apply_waits_on_its_row_lock_is_not_overwritten(fleet):
    dsns = fleet.dsns
    target = one(plan(Stores.from_dsns(dsns), RULES_V1, NOW, workers=1).corrections, "subs.subs_dunning", "update", "stage")
    theirs = next(s for s in STAGES if s not in (target.from_, target.to))
    writer = psycopg.connect(dsns["subs"])
    writer.execute("UPDATE subs_dunning SET stage = %s, updated_at = now() WHERE account_id = %s",
                   (theirs, target.account_id))  # holds the row lock, not committed yet
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(
        result=apply(Stores.from_dsns(dsns), RULES_V1, NOW, ApplyOptions(force=True, workers=1))))
    runner.start()
    try:
        _wait_until_apply_waits_on_a_lock(dsns["subs"])
        writer.commit()  # the writer wins the race, with apply's UPDATE already queued behind it
    finally:
        writer.close()
        runner.join(60)
    result = outcome["result"]
    with psycopg.connect(dsns["subs"]) as conn:
        assert conn.execute("SELECT stage FROM subs_dunning WHERE account_id = %s",
                            (target.account_id,)).fetchone()[0] == theirs
    assert [(c, s) for c, s in result.done if s == "stale"] == [(target, "stale")]
    assert ("subs.subs_dunning", "update", "stage", "stale") in statuses(dsns["eventstore"], target.account_id)
    assert result.count("applied") == len(result.done) - 1

    fleet.ingest()  # the next run sees the writer's value, still not the truth, and corrects it
    again = apply(Stores.from_dsns(dsns), RULES_V1, NOW, ApplyOptions(force=True))
    assert [(c.table, c.column, c.from_, c.to, s) for c, s in again.done] == \
        [("subs.subs_dunning", "stage", theirs, target.to, "applied")]


def test_rows_changed_between_plan_and_write_are_left_alone_whatever_the_operation(fleet):
    dsns = fleet.dsns
    planned = plan(Stores.from_dsns(dsns), RULES_V1, NOW, workers=1).corrections
    update = one(planned, "cf_prod.accounts", "update", "status")
    insert = one(planned, "subs.subs_invoice", "insert")
    delete = one(planned, "subs.subs_customer", "delete")
    flipped = "setup" if delete.from_["source"] == "checkout" else "checkout"

    def legacy_writers_strike(step: str) -> None:
        if step != "recorded":
            return
        with psycopg.connect(dsns["cf_prod"]) as conn:
            conn.execute("UPDATE accounts SET status = 'closed', updated_at = now() WHERE account_id = %s",
                         (update.account_id,))
        with psycopg.connect(dsns["subs"]) as conn:
            conn.execute("INSERT INTO subs_invoice VALUES (%s, %s, 'draft', 1, 0, now())",
                         (insert.key["stripe_invoice_id"], insert.account_id))
            conn.execute("UPDATE subs_customer SET source = %s WHERE id = %s", (flipped, delete.key["id"]))

    result = apply(Stores.from_dsns(dsns), RULES_V1, NOW, ApplyOptions(force=True), on_step=legacy_writers_strike)
    stale = {(c.table, c.op) for c, s in result.done if s == "stale"}
    assert stale == {("cf_prod.accounts", "update"), ("subs.subs_invoice", "insert"), ("subs.subs_customer", "delete")}
    with psycopg.connect(dsns["cf_prod"]) as conn:
        assert conn.execute("SELECT status FROM accounts WHERE account_id = %s",
                            (update.account_id,)).fetchone()[0] == "closed"
    with psycopg.connect(dsns["subs"]) as conn:
        assert conn.execute("SELECT status, amount_remaining FROM subs_invoice WHERE stripe_invoice_id = %s",
                            (insert.key["stripe_invoice_id"],)).fetchone() == ("draft", 1)
        assert conn.execute("SELECT source FROM subs_customer WHERE id = %s", (delete.key["id"],)).fetchone() == \
            (flipped,)
    assert result.count("applied") == len(planned) - 3


def _wait_until_apply_waits_on_a_lock(dsn: str) -> None:
    deadline = time.monotonic() + 60
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'recompute apply %' "
                               "AND wait_event_type = 'Lock'").fetchone()[0]:
            assert time.monotonic() < deadline, "apply never reached the locked row"
            time.sleep(0.01)


def test_a_second_apply_refuses_to_run_beside_the_first(stores):
    ensure_own_schema(stores["eventstore"])
    with psycopg.connect(stores["eventstore"], autocommit=True) as first:
        first.execute("SELECT pg_advisory_lock(7310002)")  # what a running apply holds
        with pytest.raises(ApplyBusy, match="another `recompute apply` is running"):
            apply(Stores.from_dsns(stores), RULES_V1, NOW, ApplyOptions())
