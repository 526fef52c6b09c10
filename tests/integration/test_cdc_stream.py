"""The legacy stores' change streams (pgoutput) into the account event log, on the real PostgreSQL."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import psycopg
import pytest

from eventlog.own_tables import ensure_own_schema
from eventlog.stores import Stores
from ingestion.legacy.cdc import stream as cdc_stream
from ingestion.legacy.cdc.keeper import STANDBY, StreamKeeper
from ingestion.legacy.cdc.names import slot_name
from ingestion.legacy.cdc.pgoutput import UNCHANGED, parse_lsn
from ingestion.legacy.cdc.setup import drop_store, published_tables, resync_lock, setup_store
from ingestion.legacy.cdc.stream import LegacyChangeStream, NotSetUp, _Recording
from ingestion.legacy.observe import digest_of
from ingestion.legacy.snapshot import LegacySnapshotIngester
from tests.support.cdc import a_stream, event_count, events_of, read_until, slots_of
from tests.support.cli import ROOT
from tests.support.legacy import a_customer_mapping, an_account, an_invoice, create_stores, execute

pytestmark = pytest.mark.integration


@pytest.fixture
def world(stores):
    create_stores(stores)
    ensure_own_schema(stores["eventstore"])
    an_account(stores)
    an_invoice(stores)
    a_customer_mapping(stores)
    return stores


def set_up(dsns, *stores_):
    return {store: setup_store(store, Stores.from_dsns(dsns)) for store in stores_ or
            ("cf_prod", "billing_prod", "subs")}


def test_setup_records_the_rows_already_there_once(world):
    reports = set_up(world)
    assert {s: r.appended for s, r in reports.items()} == {"cf_prod": 1, "billing_prod": 1, "subs": 1}
    assert len(slots_of(world)) == 3
    again = set_up(world)
    assert all(r.already for r in again.values()) and event_count(world) == 3


def checkpoint(dsns, store):
    with psycopg.connect(dsns["eventstore"]) as conn:
        return conn.execute("SELECT position FROM ingest_checkpoint WHERE source = %s", (f"cdc:{store}",)).fetchone()[0]


def test_a_reader_closed_and_reopened_records_only_what_came_after(world, monkeypatch):
    monkeypatch.setattr(cdc_stream, "STATUS_EVERY", 0.0)
    monkeypatch.setattr(cdc_stream, "TOUCH_EVERY", 0.0)
    set_up(world, "billing_prod")
    execute(world["billing_prod"], "UPDATE invoices SET status = 'paid', amount_paid = 2900")
    with a_stream(world, "billing_prod") as stream:
        assert stream.catch_up() == 1
    execute(world["billing_prod"], "UPDATE invoices SET amount_paid = 2800")
    with a_stream(world, "billing_prod") as stream:
        assert stream.catch_up() == 1
    execute(world["cf_prod"], "UPDATE accounts SET name = 'Acme 2'")  # WAL the billing_prod slot has no use for
    with a_stream(world, "billing_prod") as stream:
        assert stream.catch_up() == 0
        read_until(stream, lambda: "caught_up_to" in checkpoint(world, "billing_prod"), limit=5.0)
        caught_up = checkpoint(world, "billing_prod")
    assert [e.row["amount_paid"] for e in events_of(world) if e.table == "invoices"] == [0, 2900, 2800]
    assert caught_up["lsn_int"] == stream.position and parse_lsn(caught_up["caught_up_to"]) > stream.position  # idle: said so


KILLED_AFTER_COMMIT = """
import os, signal, sys
import json
from eventlog.stores import Stores
from ingestion.legacy.cdc import replication, stream as cdc_stream
from ingestion.legacy.observe import Observations

committed = []
commit = Observations.commit
def commit_then_remember(self, *args, **kwargs):
    appended = commit(self, *args, **kwargs)
    committed.append(appended)
    return appended
Observations.commit = commit_then_remember
confirm = replication.ReplicationConnection.confirm
def die_before_confirming(self, flushed, **kwargs):
    if committed:
        os.kill(os.getpid(), signal.SIGKILL)  # the events are committed, the slot never hears of it
    return confirm(self, flushed, **kwargs)
replication.ReplicationConnection.confirm = die_before_confirming
s = cdc_stream.LegacyChangeStream(store=sys.argv[1], stores=Stores.from_dsns(json.loads(sys.argv[2])))
s.catch_up()
"""


CHANGES = {  # per store: a table, its insert, update and delete
    "cf_prod": ("entitlements", "INSERT INTO entitlements VALUES ('acc_000042', 'sso', true, 'plan', '2026-03-01Z')",
                "UPDATE entitlements SET enabled = false", "DELETE FROM entitlements"),
    "billing_prod": ("charges", "INSERT INTO charges VALUES ('ch_1', 'acc_000042', NULL, NULL, 2900, 'failed', "
                     "'card_declined', '2026-03-01Z')", "UPDATE charges SET status = 'succeeded'",
                     "DELETE FROM charges"),
    "subs": ("subs_dunning", "INSERT INTO subs_dunning VALUES ('acc_000042', 'grace', 1, NULL, '2026-03-01Z')",
             "UPDATE subs_dunning SET stage = 'retrying', attempt_count = 2", "DELETE FROM subs_dunning"),
}


def run_killed_after_commit(dsns, store):
    done = subprocess.run([sys.executable, "-c", KILLED_AFTER_COMMIT, store, json.dumps(dict(dsns))],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr


@pytest.mark.parametrize("store", ["cf_prod", "billing_prod", "subs"])
def test_an_insert_update_and_delete_reach_the_log_once_each_across_a_reopen_and_a_kill_before_confirming(
        world, store):
    table, insert, update, delete = CHANGES[store]
    set_up(world, store)
    windows = []
    for statement in (insert, update, delete):
        started = datetime.now(UTC)
        execute(world[store], statement)
        windows.append((started, datetime.now(UTC)))
        if statement is insert:
            with a_stream(world, store) as stream:  # read, then closed
                assert stream.catch_up() == 1
        elif statement is update:
            run_killed_after_commit(world, store)  # recorded, then killed before the slot heard of it
    with a_stream(world, store) as stream:  # the server sends the update again: skipped; then the delete
        assert stream.catch_up() == 1
    events = [e for e in events_of(world) if e.table == table]
    assert [e.row is None for e in events] == [False, False, True]
    assert all(start <= e.source_time <= end  # at their commit
               for e, (start, end) in zip(events, windows, strict=True))
    assert events[0].row != events[1].row


def test_the_exported_snapshot_handoff_loses_nothing_and_duplicates_nothing_while_a_writer_runs(world):
    stop = threading.Event()
    written: list[str] = []

    def writer():
        with psycopg.connect(world["billing_prod"], autocommit=True) as conn:
            while not stop.is_set():
                charge = f"ch_{len(written):05d}"
                conn.execute("INSERT INTO charges VALUES (%s, 'acc_000042', NULL, NULL, 100, 'succeeded', NULL, "
                             "'2026-03-01Z')", (charge,))
                written.append(charge)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 50:
            time.sleep(0.01)
        set_up(world, "billing_prod")
        during = len(written)
        while len(written) < during + 50:  # the writer goes on after the slot exists
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join()
    with a_stream(world, "billing_prod") as stream:
        stream.catch_up()
    charges = [e for e in events_of(world) if e.table == "charges"]
    assert sorted(e.key["charge_id"] for e in charges) == written  # each written row once: none lost, none twice
    by_snapshot = {e.position.startswith("billing_prod@") for e in charges}
    assert by_snapshot == {True, False}  # some came by the handoff's snapshot, the rest by the stream


def test_an_update_that_leaves_a_toasted_value_unchanged_carries_it_forward(world, monkeypatch):
    unchanged_sent = []
    carried = _Recording._carried

    def spy(self, spec, relation, values, key, before):
        unchanged_sent.extend(relation.columns[i].name for i, v in enumerate(values) if v is UNCHANGED)
        return carried(self, spec, relation, values, key, before)

    monkeypatch.setattr(_Recording, "_carried", spy)
    set_up(world, "subs")
    big = "".join(f"{i:x}" for i in range(3000)) + "@example.com"  # out of line: TOASTed, and not compressible
    execute(world["subs"], "ALTER TABLE subs_account ALTER billing_email SET STORAGE EXTERNAL")
    execute(world["subs"], "INSERT INTO subs_account VALUES ('acc_000042', %s, 'DE', 'eur', NULL, false, false, "
            "'2026-03-01Z')", (big,))
    with a_stream(world, "subs") as stream:
        stream.catch_up()
    execute(world["subs"], "UPDATE subs_account SET bad_debt = true, updated_at = '2026-03-02Z'")
    with a_stream(world, "subs") as stream:
        assert stream.catch_up() == 1
    assert unchanged_sent == ["billing_email"]  # the server did not send it
    last = [e for e in events_of(world) if e.table == "subs_account"][-1]
    assert last.row["bad_debt"] is True and last.row["billing_email"] == big
    assert LegacySnapshotIngester(store="subs",  # the same digest as a snapshot's
                                  stores=Stores.from_dsns(world)).run().appended == 0


def test_a_table_without_a_replica_identity_is_not_published_and_its_owners_updates_still_work(world):
    execute(world["billing_prod"], "ALTER TABLE schedules DROP CONSTRAINT schedules_pkey")
    report = set_up(world, "billing_prod")["billing_prod"]
    assert "schedules" not in report.published and "no primary key" in report.refused["schedules"]
    assert published_tables("billing_prod", Stores.from_dsns(world)) == {"invoices", "charges", "dunning"}
    execute(world["billing_prod"], "INSERT INTO schedules VALUES ('inv_000042_01', 1, 'acc_000042', "
            "'2026-03-02Z', 'pending')")
    execute(world["billing_prod"], "UPDATE schedules SET status = 'done'")  # would fail if it were published
    execute(world["billing_prod"], "ALTER TABLE schedules ADD PRIMARY KEY (invoice_id, attempt)")  # the DBA fixes it
    again = set_up(world, "billing_prod")["billing_prod"]
    assert again.already and again.newly_published == ["schedules"]
    execute(world["billing_prod"], "UPDATE schedules SET status = 'cancelled'")
    with a_stream(world, "billing_prod") as stream:
        assert stream.catch_up() == 1


def test_resync_appends_only_real_differences_and_the_stream_then_adds_nothing_for_them(world):
    set_up(world, "billing_prod")
    resync = LegacySnapshotIngester(store="billing_prod", stores=Stores.from_dsns(world))
    assert resync.run().appended == 0
    execute(world["billing_prod"], "UPDATE invoices SET status = 'paid', amount_paid = 2900")
    execute(world["billing_prod"], "UPDATE invoices SET status = 'paid'")  # the same values again
    assert resync.run().appended == 1  # read before the stream: the one real difference
    with a_stream(world, "billing_prod") as stream:
        assert stream.catch_up() == 0  # both changes end at what resync recorded
    assert resync.run().appended == 0


def test_a_row_the_stream_builds_has_the_digest_of_postgresql_s_own_row_to_json(world):
    """Quotes, control characters, unicode, fractions of seconds, infinity, NULLs: the stream's
    JSON text is byte for byte what a snapshot reads, so resync finds nothing to add."""
    set_up(world, "billing_prod")
    execute(world["billing_prod"], "INSERT INTO charges VALUES (%s, 'acc_000042', NULL, 'ch_\"q\"\\\\', 5, 'failed', "
            "%s, '2026-03-01 12:34:56.789012+05:30')", ("ch_ünï\tcode\n", "tab\there\x01 é 日本"))
    execute(world["billing_prod"], "INSERT INTO invoices VALUES ('inv_inf', 'acc_000042', NULL, 'open', 'usd', 1, 0, "
            "'infinity', '2026-03-01 00:00:00.5Z', '2026-03-01Z')")
    with a_stream(world, "billing_prod") as stream:
        stream.catch_up()
    with psycopg.connect(world["billing_prod"], options="-c TimeZone=UTC") as conn:
        texts = {raw for (raw,) in conn.execute("SELECT row_to_json(t)::text FROM charges t UNION ALL "
                                                "SELECT row_to_json(t)::text FROM invoices t")}
    with psycopg.connect(world["eventstore"]) as conn:
        digests = {bytes(d) for (d,) in conn.execute("SELECT digest FROM ingest_row_digest WHERE store = 'billing_prod'")}
    assert {digest_of(raw) for raw in texts} <= digests


def test_drop_removes_the_slot_the_publication_and_the_position(world):
    set_up(world, "cf_prod")
    assert drop_store("cf_prod", Stores.from_dsns(world)) == [
        f"slot {slot_name(dbname(world['cf_prod']))}", "publication recompute_cf_prod"]
    assert slots_of(world) == [] and published_tables("cf_prod", Stores.from_dsns(world)) == set()
    with pytest.raises(NotSetUp):
        LegacyChangeStream(store="cf_prod", stores=Stores.from_dsns(world))


def dbname(dsn: str) -> str:
    return psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]


def test_a_changed_key_a_truncate_and_a_delete_under_replica_identity_full_each_say_which_row_went(world):
    execute(world["billing_prod"], "ALTER TABLE schedules DROP CONSTRAINT schedules_pkey")
    execute(world["billing_prod"], "ALTER TABLE schedules REPLICA IDENTITY FULL")  # the DBA's choice: published
    execute(world["billing_prod"], "INSERT INTO schedules VALUES ('inv_000042_01', 1, 'acc_000042', "
            "'2026-03-02Z', 'pending')")
    assert "schedules" in set_up(world, "billing_prod")["billing_prod"].published
    execute(world["billing_prod"], "UPDATE invoices SET invoice_id = 'inv_000042_99'")
    execute(world["billing_prod"], "DELETE FROM schedules")
    an_invoice(world, "inv_000042_03")
    execute(world["billing_prod"], "TRUNCATE invoices")
    with a_stream(world, "billing_prod") as stream:
        stream.catch_up()
    seen = [(e.table, next(iter(e.key.values())), e.row is not None) for e in events_of(world)[2:]]
    assert seen == [("invoices", "inv_000042_01", False), ("invoices", "inv_000042_99", True),
                    ("schedules", "inv_000042_01", False), ("invoices", "inv_000042_03", True),
                    ("invoices", "inv_000042_03", False), ("invoices", "inv_000042_99", False)]


def test_a_row_the_stream_cannot_record_is_parked_once_and_recorded_when_fixed(world):
    set_up(world, "billing_prod")
    execute(world["billing_prod"], "UPDATE invoices SET status = 'Paid'")
    execute(world["billing_prod"], "UPDATE invoices SET amount_due = 2901")  # still unknown: parked again
    with a_stream(world, "billing_prod") as stream:
        assert stream.catch_up() == 0 and stream.parked == 2
    execute(world["billing_prod"], "UPDATE invoices SET status = 'paid'")
    with a_stream(world, "billing_prod") as stream:
        assert stream.catch_up() == 1
    with psycopg.connect(world["eventstore"]) as conn:
        reasons = [r for (r,) in conn.execute("SELECT reason FROM parked_record ORDER BY id")]
    assert reasons == ["unknown status 'Paid' (expected one of draft, open, paid, uncollectible, void)"] * 2
    assert [e.row["status"] for e in events_of(world) if e.table == "invoices"] == ["open", "paid"]


def test_while_a_resync_holds_the_store_the_stream_keeps_its_transactions_and_records_them_after(world):
    set_up(world, "billing_prod")
    execute(world["billing_prod"], "UPDATE invoices SET amount_paid = 100")
    with a_stream(world, "billing_prod") as stream:
        with resync_lock(Stores.from_dsns(world), "billing_prod"):
            assert read_until(stream, lambda: bool(stream._complete), limit=5.0) == 0
        assert stream.poll(0.5) == 1
    assert [e.row["amount_paid"] for e in events_of(world) if e.table == "invoices"] == [0, 100]


def test_a_setup_that_died_mid_handoff_is_done_again_by_the_next_without_duplicates(world):
    from ingestion.legacy.cdc.replication import ReplicationConnection

    ingest_billing = LegacySnapshotIngester(store="billing_prod", stores=Stores.from_dsns(world))
    assert ingest_billing.run().appended == 1  # a batch-ingested history first
    dead = ReplicationConnection(Stores.from_dsns(world), "billing_prod")  # the slot made, its position never stored
    dead.create_slot(slot_name(dbname(world["billing_prod"])))
    dead.close()
    with pytest.raises(NotSetUp, match="handoff never finished"):
        LegacyChangeStream(store="billing_prod", stores=Stores.from_dsns(world))
    an_invoice(world, "inv_000042_02")
    report = set_up(world, "billing_prod")["billing_prod"]
    assert not report.already and report.appended == 1  # only the invoice the log lacked
    execute(world["billing_prod"], "DELETE FROM invoices WHERE invoice_id = 'inv_000042_02'")
    with a_stream(world, "billing_prod") as stream:
        assert stream.catch_up() == 1


def test_a_standby_ends_a_slot_holder_silent_for_longer_than_its_lease_and_reads_the_store(world, caplog):
    """A reader that holds the slot but stops answering (frozen, or a walsender that did not end it:
    issue 17's seed 3) is ended by the follower standing by once its last reply is older than the
    lease, and the standby reads the store; a changed row then reaches the log."""
    set_up(world, "billing_prod")
    stores = Stores.from_dsns(world)
    silent = LegacyChangeStream(store="billing_prod", stores=stores)  # never polled again: it answers nothing
    try:
        keeper = StreamKeeper(["billing_prod"], stores, sender_timeout_s=1.0)
        with caplog.at_level(logging.INFO, logger="recompute.cdc"):
            keeper.open()
            assert keeper.broken["billing_prod"].why.kind == STANDBY
            deadline = time.monotonic() + 8
            while ("billing_prod" not in keeper.streams or "billing_prod" in keeper.broken) \
                    and time.monotonic() < deadline:
                keeper.read(0.1)
        assert "billing_prod" in keeper.streams and "billing_prod" not in keeper.broken, \
            "the standby never took the silent holder's slot over"
        ended = [r.getMessage() for r in caplog.records if r.getMessage().startswith("billing_prod change stream held")]
        assert len(ended) == 1 and "silent for" in ended[0], ended
        execute(world["billing_prod"], "UPDATE invoices SET status = 'paid' WHERE TRUE")
        before = event_count(world)
        deadline = time.monotonic() + 10
        while event_count(world) == before and time.monotonic() < deadline:
            keeper.read(0.2)
        assert event_count(world) > before
        keeper.close()
    finally:
        try:
            silent.close()
        except Exception:  # noqa: BLE001 - its session was ended under it
            pass
