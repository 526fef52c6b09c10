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
    drift     (add_drift, from corrections whose drift is said) corrections and accounts per (owner,
              cause); accounts by the age of their open drift (T minus their earliest `since`); the
              corrections written over again since applied, by owner and table, and how soon; and
              per owner its patterns (table.column, cause, what kind of thing started it) by accounts.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.diff import Correction
from domain.drift import PastCorrection
from domain.held import HeldRow
from domain.state import TrueState

STAGE_COPIES = ("billing_prod.dunning", "subs.subs_dunning")
# The age of open drift, and how soon a correction was written over: (label, up to seconds), the last unbounded.
AGES = (("< 1 hour", 3_600), ("1 hour – 1 day", 86_400), ("1 – 7 days", 604_800), ("1 – 4 weeks", 2_419_200),
        ("1 – 3 months", 7_776_000), ("> 3 months", None))
PATTERNS = 3  # per owner
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
    cells: Counter[tuple[str, str]] = field(default_factory=Counter)  # (table, column) -> accounts
    corrections_by_cell: Counter[tuple[str, str]] = field(default_factory=Counter)  # (table, column) -> corrections
    stages: dict[str, Counter[str]] = field(default_factory=lambda: {"true": Counter(), **{t: Counter()
                                                                                     for t in STAGE_COPIES}})
    held: Counter[tuple[str, str]] = field(default_factory=Counter)  # (table, reason) -> rows
    held_examples: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # -> accounts
    top: list[tuple[int, str]] = field(default_factory=list)  # (corrections, account), the most drifting
    examples: list[Correction] = field(default_factory=list)  # the first corrections seen, one per cell
    drift_corrections: Counter[tuple[str, str]] = field(default_factory=Counter)  # (owner, cause) -> corrections
    drift_accounts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (owner, cause) -> accounts
    drift_age: Counter[str] = field(default_factory=Counter)  # AGES label -> accounts
    rewritten: Counter[tuple[str, str]] = field(default_factory=Counter)  # (owner, table) -> corrections written over again
    rewritten_after: Counter[str] = field(default_factory=Counter)  # AGES label -> of those, how soon after applied
    patterns: Counter[tuple[str, str]] = field(default_factory=Counter)  # (owner, pattern) -> accounts

    def add_drift(self, corrections: Sequence[Correction], as_of: datetime,
                  applied: Mapping[tuple[str, str, str, str | None], datetime] | None = None) -> None:
        """One account's corrections with their drift; `applied`: when the projector last applied a
        correction of each (table, op, key, column) target (to say how soon it was written over)."""
        said = [c for c in corrections if c.drift is not None]
        if not said:
            return
        for key in {(c.drift.owner, c.drift.cause) for c in said}:  # type: ignore[union-attr]
            self.drift_accounts[key] += 1
        for pattern in {(c.drift.owner, pattern_of(c)) for c in said}:  # type: ignore[union-attr]
            self.patterns[pattern] += 1
        for c in said:
            d = c.drift
            assert d is not None
            self.drift_corrections[(d.owner, d.cause)] += 1
            if d.cause == "overwrote_correction":
                self.rewritten[(d.owner, c.table)] += 1
                at = (applied or {}).get((c.table, c.op, _key_text(c.key), c.column))
                if at is not None and at <= d.since:
                    self.rewritten_after[age_label((d.since - at).total_seconds())] += 1
        oldest = min(c.drift.since for c in said)  # type: ignore[union-attr]
        self.drift_age[age_label((as_of - oldest).total_seconds())] += 1

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
        for name in ("drift_corrections", "drift_accounts", "drift_age", "rewritten", "rewritten_after", "patterns"):
            getattr(self, name).update(getattr(other, name))

    def top_patterns(self) -> dict[str, list[tuple[str, int]]]:
        """Per owner, its PATTERNS most common patterns by accounts (ties: by name)."""
        by_owner: dict[str, list[tuple[str, int]]] = {}
        for (owner, pattern), n in sorted(self.patterns.items(), key=lambda kv: (-kv[1], kv[0])):
            mine = by_owner.setdefault(owner, [])
            if len(mine) < PATTERNS:
                mine.append((pattern, n))
        return dict(sorted(by_owner.items()))


def age_label(seconds: float) -> str:
    return next(label for label, most in AGES if most is None or seconds < most)


def pattern_of(c: Correction) -> str:
    """What kind of drift it is, without the account: e.g. "subs_dunning.stage not following a Stripe event"."""
    assert c.drift is not None
    table = c.table.split(".", 1)[1]
    where = f"{table}.{c.column}" if c.op == "update" else f"{table} row {'missing' if c.op == 'insert' else 'extra'}"
    by = c.drift.by
    source = (f"the {by[5:].partition('@')[0]} threshold" if by.startswith("rule:") else
              "a Stripe event" if by.startswith("evt_") else f"a write to {_table_of(by)}")
    return {"wrong_write": f"{where} set wrong by {source}",
            "missed_change": f"{where} not following {source}",
            "missing": f"{where} since {source}",
            "overwrote_correction": f"{where} corrected, then set wrong again by {source}"}[c.drift.cause]


def _table_of(ref: str) -> str:
    """store.table[key]@position -> table."""
    return ref.partition("[")[0].split(".", 1)[-1]


def applied_times(past: Iterable[PastCorrection]) -> dict[tuple[str, str, str, str | None], datetime]:
    """When each target was last corrected (`past` in the order applied), for `add_drift`."""
    return {(p.table, p.op, _key_text(p.key), p.column): p.at for p in past}


def _key_text(key: Mapping[str, Any] | None) -> str:
    return "" if key is None else "/".join(f"{k}={key[k]}" for k in sorted(key))


def _most_first(entry: tuple[int, str]) -> tuple[int, str]:
    """The accounts with the most corrections first; among equals, in id order."""
    return -entry[0], entry[1]
