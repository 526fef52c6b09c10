"""`recompute cdc setup|status|drop` and `ingest` through the change streams, as processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from recompute.embedded import embedded_dsns, stop_embedded
from simulation.legacy_schema import create_legacy_schema
from tests.support.cdc import event_count, events_of, slots_of
from tests.support.cli import ROOT, configured, recompute
from tests.support.legacy import an_account, an_invoice, create_stores, execute

pytestmark = pytest.mark.integration


def test_setup_then_ingest_reads_the_streams_status_shows_them_resync_adds_nothing_and_drop_removes_them(stores):
    create_stores(stores)
    an_account(stores)
    an_invoice(stores)
    execute(stores["billing_prod"], "ALTER TABLE schedules DROP CONSTRAINT schedules_pkey")  # cannot be published
    env = configured(stores)
    setup = recompute("cdc", "setup", env=env)
    assert setup.returncode == 0, setup.stderr
    assert "billing_prod: slot recompute_" in setup.stdout and "handoff appended 1 events" in setup.stdout
    assert "billing_prod.schedules: no primary key and no replica identity: not published" in setup.stdout
    assert len(slots_of(stores)) == 3
    execute(stores["billing_prod"], "UPDATE invoices SET status = 'paid', amount_paid = 2900")
    execute(stores["billing_prod"], "INSERT INTO schedules VALUES ('inv_000042_01', 1, 'acc_000042', "
            "'2026-03-02Z', 'pending')")
    execute(stores["cf_prod"], "DELETE FROM accounts")
    ingest = recompute("ingest", "--source", "all", env=env)
    assert ingest.returncode == 0, ingest.stderr
    assert "billing_prod: stream appended 1" in ingest.stdout and "cf_prod: stream appended 1" in ingest.stdout
    assert "billing_prod: read 1, appended 1" in ingest.stdout  # schedules, by snapshot
    assert event_count(stores) == 5
    status = recompute("cdc", "status", "--json", env=env)
    streams = {s["source"]: s for s in json.loads(status.stdout)["streams"]}
    assert set(streams) == {"cf_prod", "billing_prod", "subs"}
    assert all(s["exists"] and s["position"] and s["lag_bytes"] >= 0 and s["retained_bytes"] > 0
               for s in streams.values())
    text = recompute("cdc", "status", "--source", "subs", env=env).stdout
    assert text.startswith("subs: slot recompute_") and "retains" in text and "B / " in text
    (subs,) = json.loads(recompute("cdc", "status", "--source", "subs", "--warn-retained-mb", "1", "--json",
                                   env=env).stdout)["streams"]
    assert ("the slot retains" in subs.get("warning", "")) == (subs["retained_bytes"] > 2**20)
    resync = recompute("ingest", "--source", "all", "--resync", env=env)
    assert resync.returncode == 0, resync.stderr
    assert "billing_prod: read 2, appended 0" in resync.stdout and event_count(stores) == 5
    drop = recompute("cdc", "drop", env=env)
    assert drop.returncode == 0 and "removed slot" in drop.stdout, drop.stderr
    assert slots_of(stores) == []
    after = recompute("ingest", "--source", "billing_prod", env=env)  # back to snapshots
    assert "billing_prod: read 2, appended 0" in after.stdout


@pytest.fixture
def data_dir():
    """Outside pytest's tmp_path: another pytest session on the machine resets /tmp/pytest-of-<user> to
    0700, and the embedded server runs as its own system user (pgserver) when we are root."""
    made = Path(tempfile.mkdtemp(prefix="recompute_cdc_test_"))
    made.chmod(0o755)
    try:
        yield made / "data"
    finally:
        shutil.rmtree(made, ignore_errors=True)


def test_setup_on_a_server_at_wal_level_replica_exits_2_naming_it_and_the_embedded_default_sets_it_itself(data_dir):
    dsns = embedded_dsns(data_dir)  # the embedded PostgreSQL 18, started as it starts by default: wal_level replica
    try:
        for store in ("cf_prod", "billing_prod", "subs"):
            with psycopg.connect(dsns[store]) as conn:
                create_legacy_schema(conn, store)
        as_configured = {**configured(dsns), "RECOMPUTE_DATA_DIR": str(data_dir)}
        refused = recompute("cdc", "setup", "--source", "billing_prod", env=as_configured)
        assert refused.returncode == 2
        assert refused.stderr.strip() == ("recompute: cdc setup: RECOMPUTE_BILLING_PROD_DSN: billing_prod: the server "
                                          "lacks wal_level = logical (it is replica; a restart is needed)")
        embedded = {"RECOMPUTE_DATA_DIR": str(data_dir), **{v: "" for v in configured(dsns)}}
        done = recompute("cdc", "setup", env=embedded)
        assert done.returncode == 0, done.stderr
        assert "set wal_level = logical and restarted it" in done.stdout and "subs: slot recompute_subs" in done.stdout
        dropped = recompute("cdc", "drop", env=embedded)
        assert dropped.returncode == 0 and dropped.stdout.count("removed slot") == 3, dropped.stderr
    finally:
        stop_embedded(data_dir)


def test_ingest_follow_keeps_reading_the_stream(stores):
    create_stores(stores)
    an_account(stores)
    an_invoice(stores)
    env = configured(stores)
    assert recompute("cdc", "setup", "--source", "billing_prod", env=env).returncode == 0
    follower = subprocess.Popen([sys.executable, "-c", "from recompute.cli import main; main()", "ingest", "--source",
                                 "billing_prod", "--follow", "--interval", "0.5"],
                                env={**os.environ, "PYTHONPATH": str(ROOT), **env}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        for amount in (100, 200, 300):
            execute(stores["billing_prod"], "UPDATE invoices SET amount_paid = %s", (amount,))
            deadline = time.monotonic() + 30
            while amounts(stores)[-1:] != [amount] and time.monotonic() < deadline:
                time.sleep(0.1)
        assert amounts(stores) == [0, 100, 200, 300]
    finally:
        follower.terminate()
        follower.wait(timeout=30)


def amounts(stores) -> list[int]:
    return [e.row["amount_paid"] for e in events_of(stores) if e.table == "invoices"]
