"""follow()'s loop with a fake follower: a step its server cut for outlasting the lease is a pause."""

from __future__ import annotations

import threading

import psycopg

from projections.follow.follower import StepReport
from projections.follow.health import Backoff
from projections.follow.loop import follow


class CutOnce:
    """A follower whose first step's session the server ends (idle_in_transaction_session_timeout:
    the step spent longer than its lease between two statements), then steps until told to stop."""

    lease_s = 3.0
    session_lost = True

    def __init__(self, stop: threading.Event) -> None:
        self.stop, self.steps, self.dropped = stop, 0, False

    def step(self) -> StepReport:
        self.steps += 1
        if self.steps == 1:
            raise psycopg.errors.IdleInTransactionSessionTimeout(
                "terminating connection due to idle-in-transaction timeout")
        self.stop.set()
        return StepReport()

    def seconds_to_next_due(self) -> float | None:
        return None

    def drop_sessions(self) -> None:
        self.dropped = True


class NoWake:
    def wait(self, seconds: float, stop: threading.Event) -> bool:
        return False


def test_a_step_cut_by_the_idle_in_transaction_timeout_is_retried_not_an_exit():
    stop = threading.Event()
    follower = CutOnce(stop)
    follow(follower, stop, NoWake(), backoff=Backoff(first=0.0, cap=0.0))  # type: ignore[arg-type]
    assert follower.steps == 2
    assert follower.dropped  # the sessions it keeps across steps are not trusted after a lost one
