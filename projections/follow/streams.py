"""The follower's memory of the account streams: each one's decoded events up to a version, so a
dirty account costs only the events appended since (not its whole stream read and decoded again).

    StreamCache(max_events).read(conn, accounts) -> {account: events}   every event of each stream
                                                                         the log has, in version order

Exact because a stream is append-only and numbered 1, 2, 3, … without gaps (eventlog/account_log.
append_events numbers under the table's exclusive lock): the events after the version in hand are
exactly what a fresh read would add. Were the versions read not to continue the ones in hand, the
stream is read again whole. A restart starts empty; past `max_events` the streams used longest ago
are forgotten (read whole again when next needed).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from domain.events import AccountEvent
from eventlog.stores import Connection
from eventlog.tail import events_after

MAX_EVENTS = 500_000  # decoded events held (~1 KB each)

class StreamCache:
    def __init__(self, max_events: int = MAX_EVENTS) -> None:
        self.max_events = max_events
        self._streams: OrderedDict[str, list[AccountEvent]] = OrderedDict()
        self._held = 0
        self.read_events = 0  # decoded since made (what the cache did not spare)

    def read(self, conn: Connection, accounts: Sequence[str]) -> dict[str, list[AccountEvent]]:
        """Each of `accounts` the log has, with all its events (lists the caller must not change)."""
        new = self._after(conn, {a: self._version(a) for a in accounts})
        whole = [a for a, events in new.items() if not _continues(self._streams.get(a, []), events)]
        if whole:  # what was read does not follow on: the stream again from its start
            new.update(self._after(conn, dict.fromkeys(whole, 0)))
            for account in whole:
                self._forget(account)
        found: dict[str, list[AccountEvent]] = {}
        for account in accounts:
            events = self._streams.get(account)
            if account in new:
                events = (events or []) + new[account]
                self._held += len(new[account])
                self._streams[account] = events
            if events:
                self._streams.move_to_end(account)
                found[account] = events
        self._trim(keep=set(found))
        return found

    def _version(self, account: str) -> int:
        events = self._streams.get(account)
        return events[-1].originator_version if events else 0

    def _after(self, conn: Connection, after: dict[str, int]) -> dict[str, list[AccountEvent]]:
        new = events_after(conn, after)
        self.read_events += sum(map(len, new.values()))
        return new

    def _forget(self, account: str) -> None:
        self._held -= len(self._streams.pop(account, []))

    def _trim(self, keep: set[str]) -> None:
        while self._held > self.max_events and self._streams:
            account = next(iter(self._streams))
            if account in keep:
                break  # the rest was used just now
            self._forget(account)


def _continues(held: Sequence[AccountEvent], new: Sequence[AccountEvent]) -> bool:
    """Pure: do `new` events follow `held` exactly (versions held[-1]+1, +2, …)?"""
    start = held[-1].originator_version if held else 0
    return all(e.originator_version == start + i for i, e in enumerate(new, 1))
