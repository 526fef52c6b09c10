"""Finding the parked rows of a range (eventlog/parked.parked_rows: every backfill partition, plan
range and follower step asks) reads the parked digests only, not every row digest ingest keeps:
at 100,000 accounts that table holds 3.2M rows and one read of it took 0.5 s of the server's time,
32 times a backfill."""

from __future__ import annotations

import psycopg
import pytest

from eventlog.account_range import AccountRange
from eventlog.own_tables import ensure_own_schema
from eventlog.parked import parked_rows
from simulation.harness.databases import scratch_databases
from tests.support.stores import eventstore_only
from tests.support.table_stats import table_reads

pytestmark = pytest.mark.integration


def test_finding_the_parked_rows_reads_only_the_parked_digests():
    with scratch_databases("eventstore") as dsns:
        es = dsns["eventstore"]
        ensure_own_schema(es)
        with psycopg.connect(es) as conn:
            conn.execute(
                "INSERT INTO ingest_row_digest (store, tbl, key, digest, parked, stream, key_json) "
                "SELECT 'billing_prod', 'invoices', 'in_' || i, '\\x00', i % 5000 = 0, 'acc_' || (i / 10), "
                "json_build_object('invoice_id', 'in_' || i)::text FROM generate_series(1, 50000) i")
            conn.execute("INSERT INTO parked_record (source, tbl, key, reason, record, position) "
                         "SELECT 'billing_prod', 'invoices', key, 'a broken row', "
                         "json_build_object('account_id', stream), 'p' FROM ingest_row_digest WHERE parked")
            conn.execute("ANALYZE ingest_row_digest")
        before = table_reads(es, ("ingest_row_digest",))["ingest_row_digest"][0]
        found = parked_rows(eventstore_only(dsns["eventstore"]), AccountRange())
        assert sorted(found) == sorted(f"acc_{i * 500}" for i in range(1, 11))
        assert table_reads(es, ("ingest_row_digest",))["ingest_row_digest"][0] - before < 50_000  # not all 50,000


def test_an_account_whose_id_holds_a_percent_sign_has_its_parked_rows_found():
    with scratch_databases("eventstore") as dsns:
        es = dsns["eventstore"]
        ensure_own_schema(es)
        with psycopg.connect(es) as conn:
            conn.execute("INSERT INTO ingest_row_digest (store, tbl, key, digest, parked, stream, key_json) "
                         "VALUES ('billing_prod', 'invoices', 'in_1', '\\x00', true, 'acc_50%', '{\"invoice_id\": \"in_1\"}')")
            conn.execute("INSERT INTO parked_record (source, tbl, key, reason, record, position) "
                         "VALUES ('billing_prod', 'invoices', 'in_1', 'a broken row', '{\"account_id\": \"acc_50%\"}', 'p')")
        found = parked_rows(eventstore_only(es), AccountRange(ids=("acc_50%", "acc_%s")))
        assert [(a, [h.key for h in held]) for a, held in found.items()] == [("acc_50%", [{"invoice_id": "in_1"}])]
