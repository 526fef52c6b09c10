"""A store's snapshot (projections/legacy_rows.StoreSnapshot) asked which kept digests changed, for
accounts whose ids hold what SQL could misread (a `%` is a placeholder to psycopg)."""

from __future__ import annotations

import psycopg
import pytest

from eventlog.account_range import AccountRange
from eventlog.stores import Stores
from projections.legacy_rows import StoreSnapshot
from simulation.harness.databases import scratch_databases
from simulation.legacy_schema import create_legacy_schema

pytestmark = pytest.mark.integration


def test_the_digests_of_an_account_whose_id_holds_a_percent_sign_are_compared():
    with scratch_databases("cf_prod") as dsns:
        with psycopg.connect(dsns["cf_prod"], autocommit=True) as conn:
            create_legacy_schema(conn, "cf_prod")
            conn.execute("INSERT INTO accounts VALUES ('acc_50%', 'A', 'pro', 'active', now(), now())")
        stores = Stores(cf_prod=dsns["cf_prod"], billing_prod="", subs="", eventstore="")
        snapshot = StoreSnapshot(stores, "cf_prod")
        try:
            ids = ("acc_50%", "acc_%s")
            assert snapshot.changed(AccountRange(ids=ids), {"acc_50%": b"\x00" * 32, "acc_%s": None}) == {"acc_50%"}
            (_, _, digest), = snapshot.rows(AccountRange(ids=ids), digests=True)
            assert snapshot.changed(AccountRange(ids=ids), {"acc_50%": digest, "acc_%s": None}) == set()
        finally:
            snapshot.close()
