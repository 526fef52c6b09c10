"""What the product needs of the account event log, as a `Protocol` with two implementations:
`PostgresEventLog` (eventlog/postgres_log.py: the library's table, our COPY append) and
`InMemoryEventLog` (eventlog/in_memory.py: a fake for tests without a database).
tests/contract/test_event_log.py runs one set of behaviour tests against both.

The contract:
- `append(events)` appends a batch in order; each event's `originator_version` is ignored and
  assigned here, continuing from its stream's head (a new stream starts at 1). It returns how many
  were appended; an empty batch appends nothing.
- `stream(originator_id)` is one stream's events in version order, equal to what was appended (every
  field as given, but the assigned version); an unknown stream is empty.
- `account_ids()` names each account with a stream once, in the order Python sorts strings (the
  catalog stream is not an account).
- `notifications(start, limit)` is the global order (the library's `select_notifications`): at most
  `limit` events with notification id >= `start`, ids increasing in append order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from domain.events import AccountEvent


@dataclass(frozen=True)
class EventNotification:
    """An event at its place in the global order: `id` is the library's notification id."""

    id: int
    event: AccountEvent


class EventLog(Protocol):
    def append(self, events: Sequence[AccountEvent]) -> int:
        """Appends `events` in order, numbering each stream on from its head; how many were appended."""
        ...

    def stream(self, originator_id: str) -> list[AccountEvent]:
        """One stream's events in version order (empty when the log has none)."""
        ...

    def account_ids(self) -> list[str]:
        """Each account with events, once, sorted (without the catalog stream)."""
        ...

    def notifications(self, start: int, limit: int) -> list[EventNotification]:
        """At most `limit` events in the global order, from notification id `start` on (inclusive)."""
        ...
