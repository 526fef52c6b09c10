"""What the engine reads an evaluation from: two seams, so each implementation offers only what it can.

    Streams       every evaluation's source: the parked rows of a range, and each account of the log
                  in it with its events (a list, or a TruthStream) and its legacy rows
    KeptStreams   Streams that can also stand kept facts, decisions and results in for the events
                  (projections/evaluation/kept.py), and keep new ones

`StoreReader` is the real one of both (the event store and the legacy stores of `stores`); the
follower gives the engine what its step read (follow/evaluation.StepRows, Streams only); unit
tests give fakes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from domain.held import HeldRow
from eventlog.account_range import AccountRange
from eventlog.parked import parked_rows
from eventlog.range_reads import account_events, truth_events
from eventlog.stores import Stores
from projections.evaluation.kept import Deciding, Events, Replayed, Source, kept_accounts
from projections.evaluation.kept_facts import Keep, can_keep, keep
from projections.legacy_rows import Rows, RowsDigests, by_account, every_store


class Streams(Protocol):
    """What every evaluation reads of one range of accounts."""

    def parked(self, accounts: AccountRange) -> Mapping[str, Sequence[HeldRow]]:
        """The held rows of the range that ingest parked, by account."""
        ...

    def accounts(self, accounts: AccountRange) -> Iterator[tuple[str, Replayed, Rows]]:
        """Each account of the log in the range, in id order, with its events (or a stream that
        folds itself) and its legacy rows by "store.table" (rows of accounts the log does not know
        are left out)."""
        ...


@runtime_checkable
class KeptStreams(Streams, Protocol):
    """Streams that kept facts can stand in for (projections/evaluation/kept_facts.py)."""

    def kept_accounts(self, accounts: AccountRange, as_of: datetime, decided: Deciding | None = None
                      ) -> Iterator[tuple[str, Source, Rows, RowsDigests]]:
        """As `accounts`, but an account whose kept facts stand for a fold at `as_of`
        (kept_facts.usable) comes with them and without its events; with `decided`, with its kept
        decision instead when that stands, or (`decided.parked` given) with the kept result when
        that stands too, and then without its rows. With `decided`, each account also comes with
        every store's digest of the rows given (kept_facts.Found)."""
        ...

    def keep(self, rows: Sequence[Keep]) -> None:
        """Keeps the facts of full folds (nothing when the event store cannot be written)."""
        ...


@dataclass(frozen=True)
class StoreReader:
    """The real `KeptStreams`: the event store and the legacy stores of `stores`, streamed.
    `truth_only`: `accounts` reads each stream as a TruthStream (backfill: it folds, never keeps).
    `fold_at_most`: `kept_accounts` raises kept.ManyToFold, before yielding anything, when this many
    streams of the range or more have no kept facts standing (plan: its workers fold them then).
    `unblocked`: the stores the caller has just seen no table of blocked (ingestion/legacy/schema.
    unblocked_stores): `kept_accounts` does not look their columns up again."""

    stores: Stores
    truth_only: bool = False
    fold_at_most: int | None = None
    unblocked: frozenset[str] = frozenset()

    def parked(self, accounts: AccountRange) -> Mapping[str, Sequence[HeldRow]]:
        return parked_rows(self.stores, accounts)

    def accounts(self, accounts: AccountRange) -> Iterator[tuple[str, Events, Rows]]:
        streams: Iterator[tuple[str, Events]] = (
            ((s.account_id, s) for s in truth_events(self.stores, accounts)) if self.truth_only
            else account_events(self.stores, accounts))
        return ((a, events, rows) for a, events, rows, _ in by_account(streams, every_store(self.stores, accounts)))

    def kept_accounts(self, accounts: AccountRange, as_of: datetime, decided: Deciding | None = None
                      ) -> Iterator[tuple[str, Source, Rows, RowsDigests]]:
        return kept_accounts(self.stores, accounts, as_of, decided, self.fold_at_most, self.unblocked)

    def keep(self, rows: Sequence[Keep]) -> None:
        if rows:
            with self.stores.connect(purpose="keep facts") as conn:
                if can_keep(conn):
                    keep(conn, rows)
