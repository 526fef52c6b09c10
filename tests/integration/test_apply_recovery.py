"""Recovery of an interrupted apply records a correction as applied only when it was written
(issue 18, defect 1): a row that holds the intent's `to` is no proof by itself."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from domain.diff import Correction
from domain.rules import RULES_V1
from eventlog.own_tables import ensure_own_schema
from eventlog.stores import Stores
from projections.apply.audit import Intent, OutgoingEvent, RunInfo, record
from projections.apply.protocol import ApplyResult, recover, start_run
from projections.apply.writes import write_store
from tests.support.follow import a_calm_world
from tests.support.legacy import execute

pytestmark = pytest.mark.integration


def an_intent_recorded(dsns, *, column: str = "delinquent", from_=None, to=False) -> Intent:
    """An intent `subs_account.delinquent null -> false` of acc_000001, recorded (step 3) and not written."""
    run = RunInfo(str(uuid.uuid4()), RULES_V1.version, datetime.now(UTC), RULES_V1.digest)
    start_run(Stores.from_dsns(dsns), run, RULES_V1)
    event = OutgoingEvent(str(uuid.uuid4()), "acc_000001", "account.flags_changed", "acc_000001")
    intent = Intent(Correction(account_id="acc_000001", table="subs.subs_account", op="update",
                               key={"account_id": "acc_000001"}, column=column, from_=from_, to=to),
                    sets={}, causes=(), event_id=event.event_id)
    with psycopg.connect(dsns["eventstore"]) as conn, conn.transaction():
        [recorded] = record(conn, run, [intent], [event])
    return recorded


def settled(dsns) -> tuple[list[str], list[str]]:
    with psycopg.connect(dsns["eventstore"]) as conn:
        audit = [s for (s,) in conn.execute("SELECT status FROM correction_audit ORDER BY id")]
        events = [s for (s,) in conn.execute("SELECT status FROM outbox_event ORDER BY seq")]
    return audit, events


@pytest.fixture
def world(stores):
    a_calm_world(stores, accounts=1)  # delinquent is false
    ensure_own_schema(stores["eventstore"])
    return stores


def test_an_intent_planned_from_a_renamed_column_is_abandoned_though_its_row_holds_the_value(world):
    """The plan read `delinquent` as null while it was renamed; the run died before writing; the
    column is back and holds false, the intent's `to`, as it always did: nothing was written."""
    an_intent_recorded(world)
    result = ApplyResult(run_id="", as_of=datetime.now(UTC), rules_version="v1")
    recover(Stores.from_dsns(world), result)
    assert dict(result.recovered) == {"abandoned": 1}
    assert settled(world) == (["abandoned"], ["void"])


def test_a_write_that_failed_on_a_renamed_column_is_stale_and_recovery_does_not_take_it_as_applied(world):
    intent = an_intent_recorded(world)
    execute(world["subs"], "ALTER TABLE subs_account RENAME delinquent TO is_delinquent")
    [outcome] = write_store(Stores.from_dsns(world), "r", [intent])
    assert outcome.status == "stale"  # the store refused it: nothing written, no exception
    execute(world["subs"], "ALTER TABLE subs_account RENAME is_delinquent TO delinquent")
    result = ApplyResult(run_id="", as_of=datetime.now(UTC), rules_version="v1")
    recover(Stores.from_dsns(world), result)  # had the run died before settling: its transaction never committed
    assert dict(result.recovered) == {"abandoned": 1}
    assert settled(world) == (["abandoned"], ["void"])


def test_an_intent_whose_write_committed_is_recovered_as_applied(world):
    intent = an_intent_recorded(world, from_=False, to=True)
    write_store(Stores.from_dsns(world), "r", [intent])  # then killed before settling
    result = ApplyResult(run_id="", as_of=datetime.now(UTC), rules_version="v1")
    recover(Stores.from_dsns(world), result)
    assert dict(result.recovered) == {"applied": 1}
    assert settled(world) == (["applied"], ["ready"])
