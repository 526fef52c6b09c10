"""Which legacy stores have no table blocked (ingestion/legacy/schema.unblocked_stores): their
snapshots need not look their columns up again."""

from __future__ import annotations

from ingestion.legacy.schema import unblocked_stores


def test_every_store_is_unblocked_when_no_table_is_blocked():
    assert unblocked_stores({}) == {"cf_prod", "billing_prod", "subs"}


def test_a_store_with_one_table_blocked_is_not_unblocked():
    assert unblocked_stores({"billing_prod.invoices": "status: no such column"}) == {"cf_prod", "subs"}


def test_a_table_name_that_only_starts_like_a_store_blocks_no_other_store():
    assert "subs" in unblocked_stores({"subs_extra.x": "no such table"})
