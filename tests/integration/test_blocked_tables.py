"""The tables blocked for a command (ingestion/legacy/schema.blocked_tables): a store's columns the
command's bootstrap has just read are not read again."""

from __future__ import annotations

import pytest

from eventlog.stores import Stores
from ingestion.legacy.schema import blocked_tables
from simulation.harness.databases import scratch_databases

pytestmark = pytest.mark.integration

NOWHERE = "host=127.0.0.1 port=1 connect_timeout=1"  # nothing listens: a read of it would fail


def test_the_stores_problems_given_are_taken_as_read():
    with scratch_databases("eventstore") as dsns:
        stores = Stores(cf_prod=NOWHERE, billing_prod=NOWHERE, subs=NOWHERE, eventstore=dsns["eventstore"])
        live = {"cf_prod": {}, "billing_prod": {"billing_prod.invoices": "status: no such column"}, "subs": {}}
        assert blocked_tables(stores, live) == {"billing_prod.invoices": "status: no such column"}
