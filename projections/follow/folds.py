"""The follower's folds, kept from one step to the next: an account's facts at a step's T made by
evolving only the events appended since the last step (domain/fold.Folding.extend), not its whole
stream again. Under drift an account's stream grows by dozens of events a minute (each applied
correction comes back observed), so a fold of the whole stream costs more every step.

    KeptFolds(max_events).stream(account, events) -> KeptFold     what the engine folds (`fold_at`)
    KeptFolds.take_starts() -> {account: Folding}                 where this step's drift walks may start

Exact: the facts are always `fold(events, as_of=T, legacy=False)`'s. A kept fold goes on only when
the events it was given are still the stream's first ones (versions 1..n, as the StreamCache gives
them), the new ones sort after every event it evolved (`extend`), and T is not before the last
event it evolved (a clock set back: `reaches`); else the stream is folded again from its first
event. A restart starts empty; past `max_events` (the streams' events the folds were given, held
as the StreamCache holds them: mostly the same objects) the folds used longest ago are forgotten.

The fold as of the last step, carried on over this step's new events, is also where this step's
drift walk of the account may start (domain/drift.points_back `start`): the walk mostly ends among
the instants since the last step, so it evolves only those, not the stream from its first event.
A step's fold is a fork of it (one copy of the account's facts builder).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from domain.events import AccountEvent
from domain.facts import AccountFacts
from domain.fold import Folding
from projections.follow.streams import MAX_EVENTS


@dataclass(frozen=True, slots=True)
class KeptFold:
    """One account's stream as the engine folds it (projections/evaluation/kept.FoldsItself)."""

    folds: KeptFolds
    account_id: str
    events: Sequence[AccountEvent]

    def fold_at(self, as_of: datetime) -> tuple[AccountFacts, int, int]:
        """The facts at `as_of`, the stream's length and its head version."""
        head = self.events[-1].originator_version if self.events else 0
        return self.folds.facts(self.account_id, self.events, as_of), len(self.events), head


class KeptFolds:
    def __init__(self, max_events: int = MAX_EVENTS) -> None:
        self.max_events = max_events
        self._kept: OrderedDict[str, tuple[Folding, int, int]] = OrderedDict()  # fold, events given, last version
        self._held = 0  # the events the kept folds were given
        self._starts: dict[str, Folding] = {}  # each account's fold before this step's T (take_starts)
        self.folded_again = 0  # streams folded from their first event (none kept, or it could not go on)

    def stream(self, account_id: str, events: Sequence[AccountEvent]) -> KeptFold:
        return KeptFold(self, account_id, events)

    def facts(self, account_id: str, events: Sequence[AccountEvent], as_of: datetime) -> AccountFacts:
        """`fold(events, as_of=as_of, legacy=False)`, from the account's kept fold where it can go on."""
        kept = self._kept.pop(account_id, None)
        if kept is not None:
            self._held -= kept[1]
        folding = kept[0] if kept is not None and _goes_on(kept, events, as_of) else None
        if folding is None:
            folding = Folding(events, legacy=False)
            self.folded_again += 1
        self._starts[account_id] = folding
        folding = folding.fork()
        facts = folding.facts_at(as_of)
        self._kept[account_id] = (folding, len(events), events[-1].originator_version if events else 0)
        self._held += len(events)
        while self._held > self.max_events and len(self._kept) > 1:
            self._held -= self._kept.popitem(last=False)[1][1]
        return facts


    def take_starts(self) -> dict[str, Folding]:
        """The folds the accounts' facts were carried on from since the last call, by account (each
        over all the events it was given, at most as far as the step before): where their drift
        walks may start. Forgotten here."""
        starts, self._starts = self._starts, {}
        return starts


def _goes_on(kept: tuple[Folding, int, int], events: Sequence[AccountEvent], as_of: datetime) -> bool:
    """Whether the kept fold can be carried to `as_of` over `events` (extending it if so)."""
    folding, given, version = kept
    if given > len(events) or (given and events[given - 1].originator_version != version):
        return False
    return folding.reaches(as_of) and folding.extend(events[given:])
