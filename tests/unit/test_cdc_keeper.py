"""How a long-running reader keeps its change streams (ingestion/legacy/cdc/keeper.py), with fake
streams and a fake clock: a broken one is retried on its own backoff, said once per state change,
and never holds up the healthy ones."""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime, timedelta

import pytest

from domain.legacy_tables import TABLES_BY_STORE
from eventlog.stores import STORE_NAMES, Stores
from ingestion.jobs import IngestJob
from ingestion.legacy.cdc.keeper import Backoff, StreamKeeper, why_broken
from ingestion.legacy.cdc.stream import NotSetUp
from ingestion.streamed_jobs import snapshot_jobs


def test_the_backoff_doubles_from_its_base_up_to_its_cap_drawn_in_the_upper_half():
    backoff = Backoff(base=0.25, cap=5.0)
    assert [backoff.delay(n, draw=0.999999) for n in (1, 2, 3, 4, 5, 6, 7, 50)] == pytest.approx(
        [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0], rel=1e-5)
    assert [backoff.delay(n, draw=0.0) for n in (1, 6)] == [0.125, 2.5]


def test_each_way_a_stream_breaks_is_a_state_of_its_own_and_says_what_to_do():
    def why(message: str) -> tuple[str, str]:
        found = why_broken(message, store="subs", slot="recompute_subs")
        return found.kind, found.text

    assert why('ERROR: publication "recompute_subs" does not exist CONTEXT: slot "recompute_subs", output plugin '
               '"pgoutput", in the change callback, associated LSN 0/1A2B') == (
        "publication", 'publication "recompute_subs" does not exist at the stream\'s position (dropped, or dropped '
                       "and made again): run `recompute cdc setup`")
    assert why("subs: no change stream (slot recompute_subs is missing): run `recompute cdc setup`")[0] == "slot"
    assert why('ERROR: replication slot "recompute_subs" does not exist')[0] == "slot"
    assert why('ERROR: replication slot "recompute_subs" is active for PID 4242')[0] == "in_use"
    assert why("FATAL: terminating connection due to administrator command")[0] == "server"
    assert why('connection failed: connection to server at "127.0.0.1", port 5432 failed: Connection refused')[0] \
        == "server"
    assert why('connection failed: connection to server at "127.0.0.1", port 31734 failed: FATAL: the database '
               "system is not yet accepting connections DETAIL: Consistent recovery state has not been yet reached.")[0] \
        == "server"  # (a restart -m immediate: recovering)
    assert why("something new") == ("other: something new", "something new")


class FakeStream:
    """A stream with a real socket to wait on; it reads nothing unless told to fail."""

    def __init__(self, store: str) -> None:
        self.store, self.slot, self.position, self.appended = store, f"recompute_{store}", 0, 0
        self._mine, self._theirs = socket.socketpair()
        self.polls = 0

    def fileno(self) -> int:
        return self._mine.fileno()

    def poll(self, max_wait: float) -> int:
        self.polls += 1
        return 0

    def close(self) -> None:
        self._mine.close()
        self._theirs.close()


class World:
    """Stores whose streams open, or fail with a message, on a clock the test moves."""

    def __init__(self) -> None:
        self.t = 0.0
        self.failing: dict[str, str] = {}
        self.opened: list[str] = []
        self.streams: dict[str, FakeStream] = {}
        self.saved: list[list] = []

    def opener(self, store: str) -> FakeStream:
        self.opened.append(store)
        if store in self.failing:
            raise NotSetUp(self.failing[store])
        self.streams[store] = FakeStream(store)
        return self.streams[store]

    def keeper(self, *stores: str) -> StreamKeeper:
        start = datetime(2026, 3, 1, tzinfo=UTC)
        return StreamKeeper(list(stores), Stores.from_dsns({store: f"dbname={store}" for store in STORE_NAMES}), backoff=Backoff(base=0.25, cap=5.0), draw=lambda: 0.0,
                            monotonic=lambda: self.t, now=lambda: start + timedelta(seconds=self.t),
                            opener=self.opener, saver=self.saved.append)  # type: ignore[arg-type]

    def run(self, keeper: StreamKeeper, seconds: float, tick: float = 0.05) -> int:
        reads = 0
        end = self.t + seconds
        while self.t < end:
            keeper.read(0.0)
            reads += 1
            self.t += tick
        return reads


MISSING = "subs: no change stream (slot recompute_subs is missing): run `recompute cdc setup`"


def test_a_broken_stream_is_retried_on_its_own_backoff_said_once_and_the_healthy_one_read_every_time(caplog):
    world = World()
    world.failing["subs"] = MISSING
    keeper = world.keeper("billing_prod", "subs")
    with caplog.at_level(logging.INFO, logger="recompute.cdc"):
        keeper.open()
        reads = world.run(keeper, 20.0)
    assert world.streams["billing_prod"].polls == reads  # never skipped, never waited for the broken one
    retries = world.opened.count("subs") - 1
    assert 5 <= retries <= 12  # 0.125, 0.25, 0.5, 1, 2, then every 2.5 s: not 400 tries in 20 s
    assert [r.getMessage() for r in caplog.records] == [
        "subs change stream broken: slot recompute_subs is missing: run `recompute cdc setup`; retrying with "
        "backoff (up to 5 s apart)"]
    assert keeper.broken["subs"].why.kind == "slot" and world.saved[-1][0][:2] == ("subs", keeper.broken["subs"].why.text)


def test_a_stream_back_is_said_once_after_its_probation_and_its_health_row_cleared(caplog):
    world = World()
    world.failing["subs"] = MISSING
    keeper = world.keeper("subs")
    keeper.open()
    world.run(keeper, 3.0)
    del world.failing["subs"]  # `cdc setup` made it again
    with caplog.at_level(logging.INFO, logger="recompute.cdc"):
        world.run(keeper, 6.0)
    assert "subs" in keeper.streams and not keeper.broken
    assert len([r for r in caplog.records if "open again" in r.getMessage()]) == 1
    assert world.saved[-1] == [("subs", None, None, [])]


def test_a_reason_that_changes_while_broken_is_one_more_line_and_the_same_one_again_none(caplog):
    world = World()
    world.failing["subs"] = "FATAL: terminating connection due to administrator command"
    keeper = world.keeper("subs")
    with caplog.at_level(logging.INFO, logger="recompute.cdc"):
        keeper.open()
        world.run(keeper, 2.0)
        world.failing["subs"] = MISSING
        world.run(keeper, 8.0)
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "subs change stream broken", "subs change stream still broken, now"]


def test_a_streamed_store_is_read_by_snapshot_only_for_the_tables_its_stream_does_not_carry():
    jobs = [IngestJob(source=store, stores=Stores.from_dsns({s: f"dbname={s}" for s in STORE_NAMES})) for store in ("cf_prod", "billing_prod", "subs")]
    left = snapshot_jobs(jobs, {"billing_prod": (), "subs": ("subs_dunning",)})
    assert [(job.source, job.tables) for job in left] == [("cf_prod", None), ("subs", ("subs_dunning",))]
    every = tuple(spec.table for spec in TABLES_BY_STORE["subs"])
    assert snapshot_jobs(jobs, {"subs": every})[-1].tables == every


def test_a_slot_another_reader_holds_is_standing_by_not_broken_and_taking_it_over_is_said(caplog):
    world = World()
    world.failing["subs"] = 'ERROR: replication slot "recompute_subs" is active for PID 4242'
    keeper = world.keeper("subs")
    with caplog.at_level(logging.INFO, logger="recompute.cdc"):
        keeper.open()
        world.run(keeper, 6.0)
        assert world.saved[-1] == [("subs", None, None, [])]  # `cdc status` and `status`: not broken
        del world.failing["subs"]  # the other reader let go
        world.run(keeper, 8.0)
    assert [r.levelname for r in caplog.records] == ["INFO", "INFO"]
    assert "standing by" in caplog.records[0].getMessage() and "taken over" in caplog.records[1].getMessage()


def test_a_follower_standing_by_asks_every_half_lease_and_ends_a_holder_silent_past_the_lease_once(caplog):
    world = World()
    world.failing["subs"] = 'ERROR: replication slot "recompute_subs" is active for PID 4242'
    asked: list[float] = []

    def holder(store: str, slot: str, silent_s: float) -> tuple[int, float | None, bool] | None:
        asked.append(world.t)
        if world.t < 4.0:  # the holder answers until it freezes
            return 4242, 0.5, False
        del world.failing["subs"]  # ended: its slot is free
        return 4242, silent_s + 0.2, True

    keeper = world.keeper("subs")
    keeper.sender_timeout_s, keeper.holder = 3.0, holder
    with caplog.at_level(logging.INFO, logger="recompute.cdc"):
        keeper.open()
        world.run(keeper, 8.0)
    assert all(b - a <= 1.5 + 0.05 for a, b in zip(asked, asked[1:], strict=False))  # never 5 s apart
    assert world.opened.count("subs") == 2  # the first open, then only once its holder was ended
    assert "subs" in keeper.streams and not keeper.broken
    lines = [r.getMessage() for r in caplog.records]
    assert len([line for line in lines if "silent for 3.2 s" in line and "process 4242" in line]) == 1
