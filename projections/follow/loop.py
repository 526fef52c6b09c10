"""Driving a follower: one pass until caught up, or on until told to stop.

    catch_up(follower, on_report)          takes its share of the partitions, then steps until no
                                           batch is full (the one pass of `project`)
    follow(follower, stop, wake, ...)      steps, then sleeps until the log grows (NOTIFY of the
                                           appends), the earliest timer of our partitions comes, or
                                           a third of the lease passes (to renew it), whichever first

`stop` is looked at between steps only: the batch in hand is always finished.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg

from eventlog.account_log import EVENTS_TABLE
from projections.follow.follower import Follower, StepReport

Report = Callable[[StepReport], None]


def catch_up(follower: Follower, on_report: Report = lambda _: None, *, max_steps: int = 10_000) -> list[StepReport]:
    reports = []
    follower.take_share()
    for _ in range(max_steps):
        report = follower.step()
        reports.append(report)
        on_report(report)
        if not report.more and not report.busy:
            break
    return reports


class Wake:
    """LISTENs to the appends' NOTIFY (eventlog/account_log.append_events)."""

    def __init__(self, eventstore_dsn: str) -> None:
        self._conn = psycopg.connect(eventstore_dsn, autocommit=True, application_name="recompute follow wake")
        self._conn.execute(f"LISTEN {EVENTS_TABLE}")

    def wait(self, seconds: float, stop: threading.Event, *, slice_s: float = 0.2) -> bool:
        """True as soon as the log grew; False after `seconds` or once `stop` is set."""
        remaining = max(seconds, 0.0)
        while not stop.is_set():
            chunk = min(slice_s, remaining)
            if any(True for _ in self._conn.notifies(timeout=chunk, stop_after=1)):
                for _ in self._conn.notifies(timeout=0.0):  # the ones that came meanwhile
                    pass
                return True
            remaining -= chunk
            if remaining <= 0:
                return False
        return False

    def close(self) -> None:
        self._conn.close()


def follow(follower: Follower, stop: threading.Event, wake: Wake, on_report: Report = lambda _: None,
           on_error: Callable[[Exception], None] = lambda _: None) -> None:
    """A database that goes away (OperationalError) is said and retried after a second: what the
    step had not committed is done again by the next one."""
    while not stop.is_set():
        try:
            report = follower.step()
        except psycopg.OperationalError as error:
            on_error(error)
            stop.wait(1.0)
            continue
        on_report(report)
        if report.more:
            continue
        due = follower.seconds_to_next_due()
        renew = follower.lease_s / 3
        wake.wait(renew if due is None else min(due, renew), stop)
