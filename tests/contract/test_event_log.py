"""One contract for the event log (eventlog/protocol.py), run against both implementations: the
PostgreSQL log on a scratch database and the in-memory fake. Each test states the expected values,
so a behaviour either gets wrong fails here rather than agreeing with the other."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from domain.events import CATALOG_STREAM, AccountEvent, LegacyRowObserved, StripeObjectObserved
from eventlog.account_log import append_events
from eventlog.account_range import AccountRange
from eventlog.in_memory import InMemoryEventLog
from eventlog.postgres_log import PostgresEventLog
from eventlog.protocol import EventLog
from simulation.harness.databases import scratch_databases
from tests.support.stores import eventstore_only

T = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture(params=["in_memory", pytest.param("postgres", marks=pytest.mark.integration)])
def log(request) -> Iterator[EventLog]:
    if request.param == "in_memory":
        yield InMemoryEventLog()
        return
    with scratch_databases("eventstore") as dsns, \
            PostgresEventLog(eventstore_only(dsns["eventstore"]), create_table=True) as opened:
        yield opened


def row(account: str, n: int, *, version: int = 0, deleted: bool = False) -> LegacyRowObserved:
    """A legacy row event; `version` is what the caller happens to pass (the log ignores it)."""
    return LegacyRowObserved(
        originator_id=account, originator_version=version, store="billing_prod", table="invoices",
        key={"invoice_id": f"inv_{n}"}, row=None if deleted else {"status": "open", "amount_due": 2900 + n},
        position=f"billing_prod@{n}:1:", source_time=T + timedelta(minutes=n), recorded_at=T + timedelta(days=1))


def stripe(account: str, n: int) -> StripeObjectObserved:
    return StripeObjectObserved(
        originator_id=account, originator_version=99, table="invoice", key={"id": f"in_{n}"},
        object={"id": f"in_{n}", "status": "paid", "lines": [{"amount": 100}]}, event_id=f"evt_{n}",
        event_type="invoice.paid", event_created=T - timedelta(hours=n), via="webhook", position=f"evt_{n}",
        source_time=datetime(2026, 2, 28, 23, 0, tzinfo=timezone(timedelta(hours=-5))), recorded_at=T)


def numbered(event: AccountEvent, version: int) -> AccountEvent:
    return event.model_copy(update={"originator_version": version})


def versions(log: EventLog, account: str) -> list[int]:
    return [event.originator_version for event in log.stream(account)]


def test_versions_start_at_1_per_stream_and_continue_across_appends(log):
    assert log.append([row("acc_a", 1, version=7), row("acc_b", 2), row("acc_a", 3)]) == 3
    assert log.append([row("acc_a", 4, version=1), row("acc_c", 5)]) == 2
    assert versions(log, "acc_a") == [1, 2, 3]
    assert versions(log, "acc_b") == [1]
    assert versions(log, "acc_c") == [1]


def test_a_stream_reads_back_equal_events_in_order_with_every_field_as_given(log):
    given = [stripe("acc_a", 1), row("acc_a", 2), row("acc_a", 3, deleted=True), stripe("acc_a", 4)]
    log.append(given[:2])
    log.append(given[2:])
    read = log.stream("acc_a")
    assert read == [numbered(event, i) for i, event in enumerate(given, start=1)]
    assert [type(event) for event in read] == [type(event) for event in given]
    assert read[0].source_time == given[0].source_time and read[0].source_time.utcoffset() == timedelta(hours=-5)
    assert read[0].event_created == T - timedelta(hours=1) and read[1].row == {"status": "open", "amount_due": 2902}


def test_appending_to_two_streams_interleaves_notification_ids_in_append_order(log):
    log.append([row("acc_a", 1), row("acc_b", 2), row("acc_a", 3)])
    log.append([row("acc_b", 4), row("acc_a", 5)])
    everything = log.notifications(1, 100)
    assert [(n.event.originator_id, n.event.originator_version) for n in everything] == [
        ("acc_a", 1), ("acc_b", 1), ("acc_a", 2), ("acc_b", 2), ("acc_a", 3)]
    assert [n.event.position for n in everything] == [f"billing_prod@{i}:1:" for i in (1, 2, 3, 4, 5)]
    ids = [n.id for n in everything]
    assert ids == sorted(ids) and len(set(ids)) == 5 and ids[0] >= 1
    assert log.notifications(ids[2], 2) == everything[2:4]  # from a position, inclusive, at most `limit`
    assert log.notifications(ids[-1] + 1, 10) == []


def test_an_empty_append_appends_nothing(log):
    assert log.append([]) == 0
    assert log.notifications(1, 10) == [] and log.account_ids() == []
    log.append([row("acc_a", 1)])
    assert log.append([]) == 0
    assert len(log.notifications(1, 10)) == 1 and versions(log, "acc_a") == [1]


def test_an_unknown_account_has_an_empty_stream(log):
    assert log.stream("acc_nobody") == []
    log.append([row("acc_a", 1)])
    assert log.stream("acc_nobody") == []


def test_accounts_are_listed_once_each_sorted_without_the_catalog(log):
    log.append([row("acc_b", 1), row("acc_a", 2), row("acc_b", 3), row(CATALOG_STREAM, 4)])
    log.append([row("acc_a", 5), row("Acc_Z", 6)])
    assert log.account_ids() == ["Acc_Z", "acc_a", "acc_b"]


def test_the_head_is_the_last_notification_id_and_new_events_follow_it_in_order(log):
    assert log.head() == 0 and log.new_events(0, 10) == []
    log.append([row("acc_a", 1), row("acc_b", 2)])
    log.append([row("acc_a", 3)])
    ids = [n.id for n in log.notifications(1, 10)]
    assert log.head() == ids[-1]
    assert log.new_events(0, 10) == [(ids[0], "acc_a"), (ids[1], "acc_b"), (ids[2], "acc_a")]
    assert log.new_events(ids[0], 1) == [(ids[1], "acc_b")]  # past `after`, at most `limit`
    assert log.new_events(log.head(), 10) == []


def test_events_after_a_version_are_what_a_whole_read_adds_past_it(log):
    log.append([row("acc_a", 1), row("acc_b", 2), row("acc_a", 3), stripe("acc_a", 4)])
    found = log.events_after({"acc_a": 1, "acc_b": 1, "acc_nobody": 0})
    assert found == {"acc_a": log.stream("acc_a")[1:]}  # acc_b has nothing past 1; an unknown stream nothing
    assert [e.originator_version for e in found["acc_a"]] == [2, 3] and isinstance(found["acc_a"][1], type(
        stripe("acc_a", 4)))
    assert log.events_after({}) == {} and log.events_after({"acc_b": 0}) == {"acc_b": log.stream("acc_b")}


def test_a_key_range_reads_each_of_its_streams_whole_in_code_point_order(log):
    log.append([row("acc_b", 1), row("Acc_Z", 2), row("acc_a", 3), row(CATALOG_STREAM, 4), row("acc_b", 5)])
    every = list(log.streams(AccountRange()))
    assert [stream for stream, _ in every] == ["Acc_Z", "acc_a", "acc_b"]  # no catalog in a key range
    assert every[2] == ("acc_b", log.stream("acc_b")) and len(every[2][1]) == 2
    assert [s for s, _ in log.streams(AccountRange(lo="acc_a", hi="acc_b"))] == ["acc_a"]
    assert [s for s, _ in log.streams(AccountRange(ids=("acc_b", CATALOG_STREAM, "acc_x")))] == [
        CATALOG_STREAM, "acc_b"] if CATALOG_STREAM < "acc_b" else ["acc_b", CATALOG_STREAM]


@pytest.mark.integration
def test_an_append_inside_the_callers_transaction_stands_or_falls_with_it():
    """append_events (eventlog/account_log.py): ingest commits its events with its checkpoint."""
    with scratch_databases("eventstore") as dsns, PostgresEventLog(eventstore_only(dsns["eventstore"]),
                                                                   create_table=True) as log:
        stores = eventstore_only(dsns["eventstore"])
        with stores.connect() as conn:
            with conn.transaction():
                assert append_events(conn, [row("acc_a", 1), row("acc_a", 2)]) == 2
            with pytest.raises(RuntimeError), conn.transaction():
                append_events(conn, [row("acc_b", 3)])
                raise RuntimeError("the caller's work failed after the append")
        assert versions(log, "acc_a") == [1, 2] and log.stream("acc_b") == [] and log.head() == 2


@pytest.mark.integration
def test_an_append_in_pipeline_mode_numbers_and_orders_as_the_copy_does():
    """serve's writer records a group of deliveries in psycopg's pipeline mode, where COPY cannot
    be used: append_events sends one INSERT of arrays instead, with the same versions, notification
    order and stored states."""
    with scratch_databases("eventstore") as dsns, PostgresEventLog(eventstore_only(dsns["eventstore"]),
                                                                   create_table=True) as log:
        log.append([row("acc_a", 1)])
        with eventstore_only(dsns["eventstore"]).connect() as conn, conn.pipeline(), conn.transaction():
            assert append_events(conn, [stripe("acc_b", 2), row("acc_a", 3), row("acc_b", 4, deleted=True)]) == 3
        assert [(n.event.originator_id, n.event.originator_version) for n in log.notifications(1, 10)] == [
            ("acc_a", 1), ("acc_b", 1), ("acc_a", 2), ("acc_b", 2)]
        assert log.stream("acc_b") == [numbered(stripe("acc_b", 2), 1), numbered(row("acc_b", 4, deleted=True), 2)]
        assert log.stream("acc_a")[1] == numbered(row("acc_a", 3), 2)
