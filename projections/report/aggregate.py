"""What the report counts of the fleet, account by account. Pure and mergeable.

    Aggregate.add(state, corrections, held)   one account, as plan evaluates it
    Aggregate.merge(other)                    one partition's counts into another's

Counts, never rows: at 100,000 accounts the report holds a few hundred numbers, the top drifting
accounts and a few examples per held reason.

    cells     accounts drifting per (store.table, column), an insert or delete as the column "(insert)"
              / "(delete)": the disagreement matrix
    stages    accounts by dunning stage: the true stage, and each store's copy ("billing_prod.dunning",
              "subs.subs_dunning"). A store's copy is the true stage unless a correction says what it
              holds instead: an update of `stage` (its `from`), an insert (no row: "none"). A held row
              has no correction, so its copy counts as the true stage.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from domain.diff import Correction
from domain.held import HeldRow
from domain.state import TrueState

STAGE_COPIES = ("billing_prod.dunning", "subs.subs_dunning")
STAGES = ("none", "grace", "retrying", "final_notice", "suspended")
TOP = 10
EXAMPLES = 3


def cell_of(c: Correction) -> tuple[str, str]:
    return c.table, c.column if c.op == "update" and c.column else f"({c.op})"


@dataclass
class Aggregate:
    accounts_checked: int = 0
    accounts_disagreeing: int = 0
    corrections: int = 0
    cells: Counter = field(default_factory=Counter)  # (table, column) -> accounts
    corrections_by_cell: Counter = field(default_factory=Counter)  # (table, column) -> corrections
    stages: dict[str, Counter] = field(default_factory=lambda: {"true": Counter(), **{t: Counter()
                                                                                     for t in STAGE_COPIES}})
    held: Counter = field(default_factory=Counter)  # (table, reason) -> rows
    held_examples: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # -> accounts
    top: list[tuple[int, str]] = field(default_factory=list)  # (corrections, account), the most drifting
    examples: list[Correction] = field(default_factory=list)  # the first corrections seen, one per cell

    def add(self, state: TrueState, corrections: Sequence[Correction], held: Iterable[HeldRow]) -> None:
        if not state.account_exists or state.account_id is None:
            return
        self.accounts_checked += 1
        self.stages["true"][state.stage] += 1
        copies = dict.fromkeys(STAGE_COPIES, state.stage)
        for c in corrections:
            if c.table in copies and c.op == "update" and c.column == "stage":
                copies[c.table] = str(c.from_)
            elif c.table in copies and c.op == "insert":
                copies[c.table] = "none"
        for table, stage in copies.items():
            self.stages[table][stage] += 1
        for h in held:
            self.held[(h.table, h.reason)] += 1
            examples = self.held_examples.setdefault((h.table, h.reason), [])
            if len(examples) < EXAMPLES and h.account_id not in examples:
                examples.append(h.account_id)
        if not corrections:
            return
        self.accounts_disagreeing += 1
        self.corrections += len(corrections)
        seen = {cell_of(c) for c in corrections}
        for cell in seen:
            self.cells[cell] += 1
        for c in corrections:
            if not self.corrections_by_cell[cell_of(c)]:
                self.examples.append(c)
            self.corrections_by_cell[cell_of(c)] += 1
        self._keep_top((len(corrections), state.account_id))

    def _keep_top(self, entry: tuple[int, str]) -> None:
        self.top = heapq.nsmallest(TOP, [*self.top, entry], key=_most_first)

    def merge(self, other: Aggregate) -> None:
        self.accounts_checked += other.accounts_checked
        self.accounts_disagreeing += other.accounts_disagreeing
        self.corrections += other.corrections
        self.cells.update(other.cells)
        for c in other.examples:
            if not self.corrections_by_cell[cell_of(c)]:
                self.examples.append(c)
        self.corrections_by_cell.update(other.corrections_by_cell)
        for name, counts in other.stages.items():
            self.stages.setdefault(name, Counter()).update(counts)
        self.held.update(other.held)
        for key, accounts in other.held_examples.items():
            mine = self.held_examples.setdefault(key, [])
            mine.extend(a for a in accounts if a not in mine)
            del mine[EXAMPLES:]
        self.top = heapq.nsmallest(TOP, self.top + other.top, key=_most_first)


def _most_first(entry: tuple[int, str]) -> tuple[int, str]:
    """The accounts with the most corrections first; among equals, in id order."""
    return -entry[0], entry[1]
