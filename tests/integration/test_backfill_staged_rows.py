"""backfill reads each legacy store once and keeps every account's rows under its partition
(projections/read_model/staged_rows.py), instead of each of the 32 partitions scanning every
legacy table for its accounts (the tables have no account_id index): the rows a partition reads
back are exactly those the store holds for its accounts, the stores' tables are each scanned once
a backfill, and nothing stays staged once the generation is built."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import psycopg
import pytest

from domain.legacy_tables import COMPARED_BY_STORE
from domain.partitions import PARTITIONS, partition_of
from domain.rules import RULES_V1, parse_rules
from projections.executor import InlineExecutor
from projections.legacy_rows import AccountRange, account_ids, legacy_rows
from projections.read_model.backfill import backfill
from projections.read_model.generations import open_generation
from projections.read_model.staged_rows import StageJob, stage_store, staged_rows
from projections.read_model.tables import ensure_read_model
from tests.e2e.test_backfill_fleet import RULES_V2
from tests.support.fleet import FLEET_NOW, a_fleet
from tests.support.table_stats import table_reads

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    with a_fleet(tmp_path_factory.mktemp("fleet")) as built:
        yield built


def a_generation(eventstore: str) -> int:
    with psycopg.connect(eventstore) as conn:
        ensure_read_model(conn)
        rules = parse_rules(RULES_V2)
        return open_generation(conn, rules, RULES_V2, FLEET_NOW, PARTITIONS, now=datetime.now(UTC)).generation.id


def store_rows(dsns: dict[str, str], ids: tuple[str, ...]) -> dict[str, dict[str, list[bytes]]]:
    """What the partition would have read itself: every store's rows of `ids`, by account."""
    found: dict[str, dict[str, list[bytes]]] = {}
    for store in COMPARED_BY_STORE:
        for account_id, rows, _ in legacy_rows(dsns[store], store, AccountRange(ids=ids)):
            found.setdefault(account_id, {}).update(canonical(rows))
    return found


def canonical(rows: dict[str, list[dict]]) -> dict[str, list[bytes]]:
    """A store sends an account's rows of a table in no set order (json_agg of a scan)."""
    return {table: sorted(orjson.dumps(row, option=orjson.OPT_SORT_KEYS) for row in found)
            for table, found in rows.items()}


def test_a_partitions_staged_rows_are_the_rows_every_store_holds_for_its_accounts(fleet):
    es = fleet.dsns["eventstore"]
    generation = a_generation(es)
    todo = (0, 5, 31)
    for store in COMPARED_BY_STORE:
        stage_store(StageJob(dsns=fleet.dsns, generation=generation, partitions=PARTITIONS, todo=todo, store=store))
    ids = account_ids(es)
    for partition in range(PARTITIONS):
        staged = {account: canonical(rows) for account, rows, _ in staged_rows(es, generation, partition)}
        if partition in todo:
            mine = tuple(a for a in ids if partition_of(a) == partition)
            assert mine and staged == store_rows(fleet.dsns, mine)
            assert list(staged) == sorted(staged)  # in code-point order, as by_account merges
        else:
            assert staged == {}  # a partition not to build is not staged


def rows_read(dsn: str, tables: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """Each table's rows read so far (by sequential scans and through indexes) and its rows."""
    return {table: (seq + fetched, live) for table, (seq, fetched, live) in table_reads(dsn, tables).items()}


def test_a_backfill_reads_each_legacy_row_once_and_keeps_nothing_staged(fleet):
    before = {store: rows_read(fleet.dsns[store], tables) for store, tables in COMPARED_BY_STORE.items()}
    result = backfill(fleet.dsns, parse_rules(RULES_V2), RULES_V2, RULES_V1, FLEET_NOW,
                      executor=InlineExecutor(), now=datetime.now(UTC))
    assert result.accounts_checked == fleet.manifest.accounts
    for store, tables in COMPARED_BY_STORE.items():
        after = rows_read(fleet.dsns[store], tables)
        read = {t: after[t][0] - before[store][t][0] for t in tables}
        assert all(after[t][1] > 0 for t in tables), "every compared table must hold rows to mean anything"
        assert read == {t: after[t][1] for t in tables}, store
    with psycopg.connect(fleet.dsns["eventstore"]) as conn:
        assert conn.execute("SELECT count(*) FROM read_model_staged_rows").fetchone()[0] == 0
