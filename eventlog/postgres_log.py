"""The `EventLog` on PostgreSQL: reads through the eventsourcing library (`AccountLog`), appends
through `append_events` (our COPY) in a transaction of its own."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

import psycopg

from domain.events import AccountEvent
from eventlog.account_log import account_ids, append_events, decode_event, open_log
from eventlog.protocol import EventNotification


class PostgresEventLog:
    """The log in the event store at `dsn`. `create_table`: have the library create its table if
    missing (as `ensure_own_schema` does); a read-only command leaves it False. Close it when done."""

    def __init__(self, dsn: str, *, create_table: bool = False) -> None:
        self.dsn = dsn
        self._log = open_log(dsn, create_table=create_table)

    def append(self, events: Sequence[AccountEvent]) -> int:
        if not events:
            return 0
        with psycopg.connect(self.dsn) as conn:  # one transaction, committed on leaving the block
            return append_events(conn, events)

    def stream(self, originator_id: str) -> list[AccountEvent]:
        return self._log.stream(originator_id)

    def account_ids(self) -> list[str]:
        with psycopg.connect(self.dsn) as conn:
            return account_ids(conn)

    def notifications(self, start: int, limit: int) -> list[EventNotification]:
        found = self._log.recorder.select_notifications(start, limit)
        return [EventNotification(id=n.id, event=decode_event(n.topic, n.state, str(n.originator_id),
                                                              n.originator_version)) for n in found]

    def close(self) -> None:
        self._log.close()

    def __enter__(self) -> PostgresEventLog:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
