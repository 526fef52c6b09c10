"""What `cdc setup` says a server or a table lacks (pure)."""

from __future__ import annotations

from ingestion.legacy.cdc.names import slot_name
from ingestion.legacy.cdc.server_check import ServerSettings, TableIdentity, missing_settings, why_not_published

READY = ServerSettings(wal_level="logical", role="postgres", can_replicate=True, max_replication_slots=10,
                       slots_used=2, max_wal_senders=10, senders_used=1, has_slot=False)


def test_a_ready_server_lacks_nothing():
    assert missing_settings(READY) == []


def test_a_server_at_wal_level_replica_is_told_to_set_logical():
    assert missing_settings(ServerSettings(**{**vars(READY), "wal_level": "replica"})) == [
        "wal_level = logical (it is replica; a restart is needed)"]


def test_a_role_without_replication_no_free_slot_and_no_free_sender_are_each_named():
    lacking = missing_settings(ServerSettings(**{**vars(READY), "can_replicate": False, "role": "app",
                                                 "slots_used": 10, "senders_used": 10}))
    assert lacking == ["the REPLICATION attribute for role app (ALTER ROLE app REPLICATION)",
                       "a free replication slot (max_replication_slots = 10, 10 used)",
                       "a free WAL sender (max_wal_senders = 10, 10 in use)"]


def test_a_store_that_has_its_slot_needs_no_free_one():
    assert missing_settings(ServerSettings(**{**vars(READY), "slots_used": 10, "has_slot": True})) == []


def test_only_tables_whose_changes_carry_their_key_are_published():
    assert why_not_published(TableIdentity("invoices", True, "d", True)) is None
    assert why_not_published(TableIdentity("schedules", True, "f", False)) is None  # REPLICA IDENTITY FULL
    assert "no primary key" in why_not_published(TableIdentity("schedules", True, "d", False))
    assert "no primary key" in why_not_published(TableIdentity("schedules", True, "n", True))
    assert why_not_published(TableIdentity("charges", False, "n", False)) == "no such table"


def test_slot_names_carry_the_database_and_stay_within_what_postgresql_allows():
    assert slot_name("cf_prod") == "recompute_cf_prod"
    odd = slot_name("Billing-Prod")
    assert odd.startswith("recompute_billing_prod_") and odd != slot_name("billing_prod")
    assert len(slot_name("x" * 80)) <= 63
