"""The `EventLog` on PostgreSQL: reads a stream and the notifications through the eventsourcing
library (`AccountLog`), appends through `append_events` (our COPY) in a transaction of its own, and
reads the tail and key ranges with the product's own queries (eventlog/tail.py, range_reads.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType

from domain.events import AccountEvent
from eventlog import tail
from eventlog.account_log import account_ids, append_events, decode_event, open_log
from eventlog.account_range import AccountRange
from eventlog.protocol import EventNotification
from eventlog.range_reads import account_events
from eventlog.stores import Stores


class PostgresEventLog:
    """The log in the event store of `stores`. `create_table`: have the library create its table if
    missing (as `ensure_own_schema` does); a read-only command leaves it False. Close it when done."""

    def __init__(self, stores: Stores, *, create_table: bool = False) -> None:
        self.stores = stores
        self._log = open_log(stores.eventstore, create_table=create_table)

    def append(self, events: Sequence[AccountEvent]) -> int:
        if not events:
            return 0
        with self.stores.connect(purpose="append") as conn:  # one transaction, committed on leaving the block
            return append_events(conn, events)

    def stream(self, originator_id: str) -> list[AccountEvent]:
        return self._log.stream(originator_id)

    def account_ids(self) -> list[str]:
        with self.stores.connect(purpose="read the log") as conn:
            return account_ids(conn)

    def notifications(self, start: int, limit: int) -> list[EventNotification]:
        found = self._log.recorder.select_notifications(start, limit)
        return [EventNotification(id=n.id, event=decode_event(n.topic, n.state, str(n.originator_id),
                                                              n.originator_version)) for n in found]

    def head(self) -> int:
        with self.stores.connect(purpose="read the log") as conn:
            return tail.head(conn)

    def new_events(self, after: int, limit: int) -> list[tuple[int, str]]:
        with self.stores.connect(purpose="read the log") as conn:
            return tail.new_events(conn, after, limit)

    def events_after(self, versions: Mapping[str, int]) -> dict[str, list[AccountEvent]]:
        with self.stores.connect(purpose="read the log") as conn:
            return tail.events_after(conn, versions)

    def streams(self, accounts: AccountRange) -> Iterator[tuple[str, list[AccountEvent]]]:
        return account_events(self.stores, accounts)

    def close(self) -> None:
        self._log.close()

    def __enter__(self) -> PostgresEventLog:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
