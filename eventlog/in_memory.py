"""`InMemoryEventLog`: the `EventLog` as plain Python, for tests that need the log but not PostgreSQL.

It keeps the contract of eventlog/protocol.py (tests/contract/test_event_log.py holds it to the
same tests as `PostgresEventLog`): versions per stream from 1, notification ids from 1 in append
order. Events are frozen values: what is appended comes back equal, with its assigned version.
"""

from __future__ import annotations

from collections.abc import Sequence

from domain.events import CATALOG_STREAM, AccountEvent
from eventlog.protocol import EventNotification


class InMemoryEventLog:
    def __init__(self, events: Sequence[AccountEvent] = ()) -> None:
        self._streams: dict[str, list[AccountEvent]] = {}
        self._order: list[AccountEvent] = []  # the global order: notification id n is self._order[n - 1]
        self.append(events)

    def append(self, events: Sequence[AccountEvent]) -> int:
        for event in events:
            stream = self._streams.setdefault(event.originator_id, [])
            numbered = event.model_copy(update={"originator_version": len(stream) + 1})
            stream.append(numbered)
            self._order.append(numbered)
        return len(events)

    def stream(self, originator_id: str) -> list[AccountEvent]:
        return list(self._streams.get(originator_id, ()))

    def account_ids(self) -> list[str]:
        return sorted(stream_id for stream_id in self._streams if stream_id != CATALOG_STREAM)

    def notifications(self, start: int, limit: int) -> list[EventNotification]:
        first = max(start, 1)
        return [EventNotification(id=i, event=event)
                for i, event in enumerate(self._order[first - 1:first - 1 + limit], start=first)]
