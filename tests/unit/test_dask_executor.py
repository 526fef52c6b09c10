"""The Dask executor (recompute/dask_executor.py) starts a local cluster only for work: a command
that finds none worth its workers (plan on an unchanged log) pays for no worker processes."""

from __future__ import annotations

from recompute.dask_executor import DaskExecutor


def test_a_local_cluster_is_started_by_the_first_work_given_not_by_being_made_ready(monkeypatch):
    started = []
    executor = DaskExecutor(workers=2)
    monkeypatch.setattr(executor, "connect", lambda: started.append("local"))
    executor.ready()
    assert started == []


def test_a_scheduler_is_connected_to_when_made_ready_so_one_unreachable_fails_before_any_work(monkeypatch):
    started = []
    executor = DaskExecutor(workers=2, scheduler="tcp://127.0.0.1:9")
    monkeypatch.setattr(executor, "connect", lambda: started.append("scheduler"))
    executor.ready()
    assert started == ["scheduler"]
