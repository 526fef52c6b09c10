"""An event store made by an earlier version of recompute: every command works on it, read-only ones too."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.support.cli import configured, recompute
from tests.support.legacy import an_account, create_stores

pytestmark = pytest.mark.integration

# What this version added to tables an earlier one made (eventlog/own_tables.py UPGRADES).
AS_AN_EARLIER_VERSION_LEFT_THEM = """
DROP INDEX IF EXISTS parked_record_waiting;
ALTER TABLE parked_record DROP COLUMN waiting_for, DROP COLUMN via, DROP COLUMN resolved_at;
ALTER TABLE apply_run DROP COLUMN rules_digest;
ALTER TABLE correction_audit DROP COLUMN rules_digest;
"""


def test_read_only_commands_work_on_an_event_store_an_earlier_version_made(stores):
    create_stores(stores)
    an_account(stores)
    assert recompute("ingest", "--source", "cf_prod", env=configured(stores)).returncode == 0
    with psycopg.connect(stores["eventstore"]) as conn:
        conn.execute(AS_AN_EARLIER_VERSION_LEFT_THEM)

    explained = recompute("explain", "acc_000042", "--json", env=configured(stores))
    assert explained.returncode == 0, explained.stderr
    assert json.loads(explained.stdout)["parked"] == []
    for command in (("plan", "--json"), ("status", "--json")):
        result = recompute(*command, env=configured(stores))
        assert result.returncode == 0, result.stderr
