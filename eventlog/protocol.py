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
- `head()` is the highest notification id (0: nothing appended); `new_events(after, limit)` the
  (id, stream) of at most `limit` events with id > `after`, in the global order (a follower's tail).
- `events_after(versions)` is each given stream's events after the version given for it, in version
  order; a stream with none (or unknown) is left out (a follower's cache tops up with it).
- `streams(accounts)` is the key-range bulk read: each stream of the range (eventlog/account_range.py)
  with all its events, streams in the order Python sorts their ids.

PostgresEventLog answers each from the same functions the product calls on a connection it holds
(eventlog/tail.py, eventlog/range_reads.py), so this contract covers those queries too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from domain.events import AccountEvent
from eventlog.account_range import AccountRange


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

    def head(self) -> int:
        """The highest notification id (0: nothing appended)."""
        ...

    def new_events(self, after: int, limit: int) -> list[tuple[int, str]]:
        """(notification id, stream) of at most `limit` events past `after`, in the global order."""
        ...

    def events_after(self, versions: Mapping[str, int]) -> dict[str, list[AccountEvent]]:
        """Each stream of `versions` with events after the version given: those, in version order."""
        ...

    def streams(self, accounts: AccountRange) -> Iterator[tuple[str, list[AccountEvent]]]:
        """Each stream of `accounts` with its events, in the order Python sorts the ids."""
        ...
