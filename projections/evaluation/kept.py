"""The kept-facts shortcut of a range: which accounts' kept facts, decisions or results stand at T
(projections/evaluation/kept_facts.py says when and why), and their sources in id order.

    kept_accounts(stores, accounts, as_of, decided) -> (account, (events, Stored), rows, digests)...

Read in one snapshot of the kept facts with the streams' heads (KeptFactsReader; the heads walked
on a session of their own in it while the kept rows are read), and one snapshot per legacy store:
first each store says which kept results' digests changed (the three at once), then the rows of
every other account are streamed (an account whose kept result stands is not read at all).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Protocol

from domain.events import AccountEvent
from domain.facts import AccountFacts
from domain.held import HeldRow
from domain.legacy_tables import COMPARED_BY_STORE
from domain.rules import Rules
from domain.state import TrueState
from eventlog.account_range import AccountRange
from eventlog.range_reads import TruthStream, order, streaming_session, truth_events
from eventlog.stores import Stores
from projections.evaluation.kept_facts import (
    DecisionKey,
    Found,
    Kept,
    KeptFactsReader,
    Known,
    decode,
    decode_result,
    decode_state,
    parked_digest,
    usable,
)
from projections.legacy_rows import Rows, RowsDigests, StoreSnapshot, by_account


@dataclass(frozen=True)
class Stored:
    """What stands for an account's events at T: its kept facts (as of T), or the decision kept
    beside them (restated at T, decided at `decided_as_of`; then `facts` is None), or what that
    decision found against the account's rows (`known`: then neither is decoded, nor its rows
    read), and the stream version they reflect."""

    stream_version: int
    facts: AccountFacts | None = None
    decided: TrueState | None = None
    decided_as_of: datetime | None = None
    known: Known | None = None


class FoldsItself(Protocol):
    """A stream that makes its own fold at T (the follower keeps its folds: follow/folds.KeptFold)."""

    def fold_at(self, as_of: datetime) -> tuple[AccountFacts, int, int]:
        """`fold(events, as_of=as_of, legacy=False)`, the stream's length and its head version."""
        ...


# An account's events as read: every one decoded, or only those the truth reads (TruthStream).
Events = list[AccountEvent] | TruthStream
# What a replaying evaluation may be given for an account: its events, or a stream that folds itself.
Replayed = Events | FoldsItself
# An account's source for the fold: its events, or (no events read: []) what is kept for it.
Source = tuple[Events, Stored | None]
# kept_or_events' three streams merged: the events replayed, or what is kept, still encoded (a
# decision: True, the facts: False, a result: None).
_Merged = tuple[TruthStream, None] | tuple[bool | None, bytes]


@dataclass(frozen=True)
class Deciding:
    """What an evaluation decides under, so a kept decision can stand: its key and rules; and, when
    the caller needs no true state (plan), the range's parked rows, so a kept result can stand too."""

    key: DecisionKey
    rules: Rules
    parked: Mapping[str, Sequence[HeldRow]] | None = None  # None: no kept result is used


class ManyToFold(Exception):
    """kept_accounts' `fold_at_most` streams or more of the range have no kept facts standing
    (raised before anything is yielded: nothing read is lost but the heads and the kept rows).
    `streams`: every stream of the range, sorted (plan splits them into its workers' ranges)."""

    def __init__(self, message: str, streams: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.streams = list(streams)


def kept_accounts(stores: Stores, accounts: AccountRange, as_of: datetime, decided: Deciding | None = None,
                  fold_at_most: int | None = None, unblocked: frozenset[str] = frozenset()
                  ) -> Iterator[tuple[str, Source, Rows, RowsDigests]]:
    """KeptStreams.kept_accounts (projections/evaluation/sources.py) on the stores of `stores`;
    ManyToFold when `fold_at_most` streams or more are to be folded. `unblocked`: the stores just
    seen with no table blocked (StoreSnapshot's `unblocked`)."""
    # each store on its own session and thread: opened while the kept rows are read, digesting its
    # rows while the heads are walked; the heads on a session and thread of their own in the kept
    # rows' snapshot, walked while the kept rows are read (measured at 10k accounts, issue 23)
    digesting = ThreadPoolExecutor(len(COMPARED_BY_STORE) + 1)
    opening = [digesting.submit(StoreSnapshot, stores, store, unblocked=store in unblocked)
               for store in COMPARED_BY_STORE]
    reader: KeptFactsReader | None = None
    try:
        reader = KeptFactsReader(stores)
        collate = streaming_session(reader.conn)
        walking = digesting.submit(reader.heads_beside(accounts.where("originator_id", collate=collate),
                                                       walk=not collate and accounts.ids is None))  # an interval
        kept = reader.kept(accounts.where("account_id", collate=collate), *(
            (decided.key, as_of) if decided is not None else ()))
        snapshots = [snapshot.result() for snapshot in opening]
        found = results_found(kept, decided, len(snapshots))
        changing = [digesting.submit(store.changed, accounts, {a: f.rows[i] for a, f in found.items()})
                    for i, store in enumerate(snapshots)] if found else []
        heads = walking.result()
        use = {account for account, head in heads.items() if usable(kept.get(account), head, as_of)}
        if fold_at_most is not None and len(heads) - len(use) >= fold_at_most:
            raise ManyToFold(f"{len(heads) - len(use)} streams to fold", sorted(heads))
        changed: set[str] = set().union(*(c.result() for c in changing))
        known = {account: f for account, f in found.items() if account in use and account not in changed}
        legacy = [store.rows(accounts, digests=decided is not None, **rows_wanted(heads, known))
                  for store in snapshots]
        yield from by_account(kept_or_events(stores, reader, accounts, as_of, heads, kept, use, known, decided,
                                             collate), legacy)
    finally:
        digesting.shutdown(cancel_futures=True)  # a store's session is closed only once its digest is in
        if reader is not None:
            reader.close()
        for snapshot in opening:
            if not snapshot.cancelled() and snapshot.exception() is None:
                snapshot.result().close()


def rows_wanted(heads: Mapping[str, int], known: Mapping[str, Found]) -> dict[str, list[str]]:
    """StoreSnapshot.rows' filter: the rows of every stream but those whose kept result stands,
    named by whichever list is shorter (on an unchanged log none are read: `only` is empty). With
    no result standing nothing is filtered: kept_or_events then streams the range's events in a
    read of their own, which may hold a stream `heads` did not."""
    if not known:
        return {}
    wanted = sorted(heads.keys() - known.keys())
    return {"only": wanted} if len(wanted) <= len(known) else {"skip": sorted(known)}


def results_found(kept: Mapping[str, Kept], decided: Deciding | None, stores: int) -> dict[str, Found]:
    """The kept results that stand but for the streams' heads and the rows: the decision beside
    them stands (KeptFactsReader.kept read them so), and their parked rows are those they were
    found against. One stands when the account's facts stand too (`usable`) and no store's digest
    of its rows changed since (each store compares them itself: StoreSnapshot.changed)."""
    if decided is None or decided.parked is None:
        return {}
    parked = decided.parked
    return {account: found for account, k in kept.items() if (found := k.found) is not None
            and len(found.rows) == stores and found.parked == parked_digest(parked.get(account, ()))}


def kept_or_events(stores: Stores, reader: KeptFactsReader, accounts: AccountRange, as_of: datetime,
                   heads: Mapping[str, int], kept: Mapping[str, Kept], use: set[str], known: Mapping[str, Found],
                   decided: Deciding | None, collate: bool) -> Iterator[tuple[str, Source]]:
    """Each stream of the range (`heads`) in id order: the kept result when it stands (`known`),
    else what is kept for it when its facts stand for a fold at `as_of` (`use`: its decision,
    when `decided` is given and it stands; else the facts), else its events. `reader` is the
    snapshot `heads` and `use` were read from; the streams to replay are read by id (all of the
    range when nothing kept is usable)."""
    if not use:
        for stream in truth_events(stores, accounts):
            yield stream.account_id, (stream, None)
        return
    replay = tuple(sorted(set(heads) - use))
    folded: Iterator[tuple[str, _Merged]] = ((s.account_id, (s, None)) for s in
                                             (truth_events(stores, AccountRange(ids=replay)) if replay else iter(())))
    stored: Iterator[tuple[str, _Merged]] = ((a, (is_decision, data)) for a, is_decision, data in reader.facts(
        order("account_id", collate), sorted(use - known.keys()), as_of, decided.key if decided else None))
    results: Iterator[tuple[str, _Merged]] = ((a, (None, known[a].data)) for a in sorted(known))
    for account_id, source in heapq.merge(folded, stored, results, key=itemgetter(0)):
        if isinstance(source[0], TruthStream):
            yield account_id, (source[0], None)
            continue
        version = heads[account_id]
        if source[0] is None:
            yield account_id, ([], Stored(version, known=decode_result(source[1])))
        elif source[0]:
            assert decided is not None
            yield account_id, ([], Stored(version, decided=decode_state(source[1], as_of, decided.rules),
                                          decided_as_of=kept[account_id].decided_as_of))
        else:
            yield account_id, ([], Stored(version, facts=decode(source[1], as_of)))

