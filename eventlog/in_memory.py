"""`InMemoryEventLog`: the `EventLog` as plain Python, for tests that need the log but not PostgreSQL.

It keeps the contract of eventlog/protocol.py (tests/contract/test_event_log.py holds it to the
same tests as `PostgresEventLog`): versions per stream from 1, notification ids from 1 in append
order. Events are frozen values: what is appended comes back equal, with its assigned version.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from domain.events import CATALOG_STREAM, AccountEvent
from eventlog.account_range import AccountRange
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

    def head(self) -> int:
        return len(self._order)

    def new_events(self, after: int, limit: int) -> list[tuple[int, str]]:
        first = max(after, 0)
        return [(i, event.originator_id) for i, event in enumerate(self._order[first:first + limit], start=first + 1)]

    def events_after(self, versions: Mapping[str, int]) -> dict[str, list[AccountEvent]]:
        found = {stream: [e for e in self._streams.get(stream, ()) if e.originator_version > version]
                 for stream, version in versions.items()}
        return {stream: events for stream, events in found.items() if events}

    def streams(self, accounts: AccountRange) -> Iterator[tuple[str, list[AccountEvent]]]:
        return ((stream, list(events)) for stream, events in sorted(self._streams.items()) if accounts.holds(stream))
