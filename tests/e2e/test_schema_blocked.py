"""What a blocked table looks like to an operator (issue 18): `ingest`, `plan`, `status`,
`cdc status` and `/metrics` say which table, which column and why; the rest goes on."""

from __future__ import annotations

import json

import psycopg_pool
import pytest

from recompute.metrics import EventStoreCollector
from tests.support.cli import configured, recompute
from tests.support.follow import a_calm_world, an_overdue_invoice
from tests.support.legacy import execute

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WHY = "delinquent: no such column"


def test_a_renamed_column_blocks_its_table_in_every_report_while_the_rest_goes_on(stores):
    accounts = a_calm_world(stores, accounts=3)
    an_overdue_invoice(stores, accounts[0], days=5)  # dunning rows to insert: the other tables still planned
    execute(stores["subs"], "ALTER TABLE subs_account RENAME delinquent TO is_delinquent")
    env = configured(stores)

    ingested = recompute("ingest", "--source", "all", env=env)
    assert ingested.returncode == 0, ingested.stderr
    assert f"subs.subs_account blocked: {WHY}" in ingested.stdout
    assert f"subs.subs_account blocked: {WHY}" in ingested.stderr  # said at start, as a log line

    planned = recompute("plan", "--json", env=env)
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    assert plan["blocked"] == {"subs.subs_account": WHY}
    assert {c["table"] for c in plan["corrections"]} == {"billing_prod.dunning", "subs.subs_dunning"}
    assert [(h["account_id"], h["table"], h["reason"]) for h in plan["held"]] == [  # read as null: not corrected
        (a, "subs.subs_account", f"table subs.subs_account blocked: {WHY}") for a in accounts]
    text = recompute("plan", env=env).stdout
    assert f"subs.subs_account blocked: {WHY}: nothing of it is corrected until its schema matches again" in text

    status = json.loads(recompute("status", "--json", env=env).stdout)
    assert status["blocked_tables"] == {"subs.subs_account": WHY}
    assert f"subs.subs_account blocked: {WHY}" in recompute("status", env=env).stdout

    streams = json.loads(recompute("cdc", "status", "--json", env=env).stdout)["streams"]
    assert {s["source"]: s["blocked"] for s in streams} == {
        "cf_prod": {}, "billing_prod": {}, "subs": {"subs.subs_account": WHY}}

    with psycopg_pool.ConnectionPool(stores["eventstore"], min_size=1, max_size=1) as pool:
        families = {f.name: f for f in EventStoreCollector(pool).collect()}
    [sample] = families["recompute_legacy_table_blocked"].samples
    assert sample.labels == {"table": "subs.subs_account", "reason": WHY} and sample.value == 1

    execute(stores["subs"], "ALTER TABLE subs_account RENAME is_delinquent TO delinquent")
    assert recompute("ingest", "--source", "subs", env=env).returncode == 0  # read again whole: lifted
    assert json.loads(recompute("status", "--json", env=env).stdout)["blocked_tables"] == {}
    plan = json.loads(recompute("plan", "--json", env=env).stdout)
    assert plan["blocked"] == {} and "subs.subs_account" in {c["table"] for c in plan["corrections"]}
