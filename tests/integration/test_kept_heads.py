"""The streams' heads a plan judges kept facts by are read in the kept rows' snapshot, though on a
session of their own (projections/evaluation/kept_facts.KeptFactsReader.heads_beside)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from eventlog.account_log import EVENTS_TABLE
from eventlog.own_tables import ensure_own_schema
from eventlog.stores import Stores
from projections.evaluation.kept_facts import KeptFactsReader
from simulation.harness.databases import scratch_databases

pytestmark = pytest.mark.integration

APPEND = sql.SQL("INSERT INTO {} (originator_id, originator_version, topic, state) VALUES (%s, %s, 't', '')").format(
    sql.Identifier(EVENTS_TABLE))


def test_heads_walked_beside_are_those_of_the_readers_snapshot_not_those_appended_since():
    with scratch_databases("eventstore") as dsns:
        ensure_own_schema(dsns["eventstore"])
        stores = Stores(cf_prod="", billing_prod="", subs="", eventstore=dsns["eventstore"])
        with psycopg.connect(dsns["eventstore"], autocommit=True) as log:
            for account, version in (("acc_1", 1), ("acc_1", 2), ("acc_2", 1)):
                log.execute(APPEND, (account, version))
            reader = KeptFactsReader(stores)
            try:
                heads = reader.heads_beside(sql.SQL("true"), walk=True)
                log.execute(APPEND, ("acc_2", 2))  # after the reader's snapshot
                log.execute(APPEND, ("acc_3", 1))
                assert heads() == {"acc_1": 2, "acc_2": 1}
            finally:
                reader.close()
