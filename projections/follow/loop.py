"""Driving a follower: one pass until caught up, or on until told to stop.

    catch_up(follower, on_report)          takes its share of the partitions, then steps until no
                                           batch is full (the one pass of `project`)
    follow(follower, stop, wake, ...)      steps, then sleeps until the log grows (NOTIFY of the
                                           appends), the earliest timer of our partitions comes, or
                                           a third of the lease passes (to renew it), whichever first

`stop` is looked at between steps only: the batch in hand is always finished.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from eventlog.stores import Connection, OperationalError, Stores, errors
from eventlog.tail import listen
from projections.follow.follower import Follower, StepReport
from projections.follow.health import Backoff, Health

Report = Callable[[StepReport], None]
# a session gone: the server went away, or ended it (a step longer than the lease between two
# statements: idle_in_transaction_session_timeout, an InternalError, not an OperationalError)
SESSION_ENDED = (OperationalError, errors.IdleInTransactionSessionTimeout)
log = logging.getLogger("recompute.follow")
# A step retried after a lost session waits at most this long: at 5 s, a follower came back up to 5 s
# after its server did (a restart of 1.4 s: back after 4.7 s), against the contract's 5 s to recover.
FOLLOW_RETRY_CAP_S = 1.0

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
    """LISTENs to the appends' NOTIFY (eventlog/account_log.append_events). Its session may be ended
    under it (a server restart, pg_terminate_backend): the wait then ends as a NOTIFY would (what
    was appended meanwhile was not told, so the follower steps at once), and the next wait LISTENs
    on a new session."""

    def __init__(self, stores: Stores) -> None:
        self._stores = stores
        self._conn: Connection | None = None
        self.health = Health(log, "the LISTEN session (recompute follow wake)", source="eventstore")
        self._listen()

    def _listen(self) -> bool:
        try:
            self._conn = self._stores.connect(purpose="recompute follow wake", autocommit=True)
            listen(self._conn)
        except OperationalError as error:
            self._drop(error)
            return False
        self.health.up("listening again")
        return True

    def _drop(self, error: Exception) -> None:
        self.health.down(error, gone="was lost")
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def wait(self, seconds: float, stop: threading.Event, *, slice_s: float = 0.2) -> bool:
        """True as soon as the log grew; False after `seconds` or once `stop` is set."""
        if self._conn is None and not self._listen():
            stop.wait(max(seconds, 0.0))
            return False
        conn = self._conn
        assert conn is not None
        remaining = max(seconds, 0.0)
        while not stop.is_set():
            chunk = min(slice_s, remaining)
            try:
                if any(True for _ in conn.notifies(timeout=chunk, stop_after=1)):
                    for _ in conn.notifies(timeout=0.0):  # the ones that came meanwhile
                        pass
                    return True
            except OperationalError as error:  # a change meanwhile would not be told: step at once
                self._drop(error)
                return True
            remaining -= chunk
            if remaining <= 0:
                return False
        return False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

def follow(follower: Follower, stop: threading.Event, wake: Wake, on_report: Report = lambda _: None,
           backoff: Backoff | None = None) -> None:
    """Steps until `stop`. The event store going away (a restart, a failover to the same address, a
    terminated session: OperationalError) is a pause, said once when it goes and once when it is
    back, retried after a capped, jittered backoff: what the step had not committed is done again
    by the next one, on a new session."""
    backoff = backoff or Backoff(cap=FOLLOW_RETRY_CAP_S)
    eventstore, databases = Health(log, "the event store", source="eventstore"), Health(log, "a database", source="legacy store or catalog")
    while not stop.is_set():
        try:
            report = follower.step()
            due = None if report.more else follower.seconds_to_next_due()
        except SESSION_ENDED as error:  # its own session's, or one of a legacy store's or the catalog's
            (eventstore if follower.session_lost else databases).down(error)
            follower.drop_sessions()  # those it keeps across steps may be gone too: new ones next step
            stop.wait(backoff.next())
            continue
        eventstore.up()
        databases.up()
        backoff.reset()
        on_report(report)
        if report.more:
            continue
        renew = follower.lease_s / 3
        wake.wait(renew if due is None else min(due, renew), stop)
