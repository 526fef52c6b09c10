"""`plan`: the true state of every account (or one) against its legacy rows, as corrections.

The shell streams accounts (projections/legacy_rows.py) and calls the pure core for each:
fold -> true_state -> corrections_for -> hold (domain/held.py: no correction for a row whose latest
version ingest parked, nor for the entitlements of a plan product_config does not know; those rows
are listed as held). With workers > 1 the accounts are split into ranges, one
process each; every process streams its own range, so memory is one account per process.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eventlog.processes import worker_pool
from domain.catalog import Catalog, fold_catalog
from domain.diff import Correction, corrections_for
from domain.fold import fold
from domain.held import HeldRow, hold
from domain.legacy_tables import COMPARED_BY_STORE
from domain.rules import Rules
from domain.state import TrueState
from domain.truth import true_state
from projections.legacy_rows import AccountRange, account_events, account_ranges, by_account, \
    catalog_events, legacy_rows, parked_rows


@dataclass
class PlanResult:
    as_of: datetime
    rules_version: str
    rules_digest: str = ""
    accounts_checked: int = 0
    events_folded: int = 0
    corrections: list[Correction] = field(default_factory=list)
    held: list[HeldRow] = field(default_factory=list)  # rows of the accounts checked that nothing is planned for

    @property
    def accounts_disagreeing(self) -> int:
        return len({c.account_id for c in self.corrections})

    def merge(self, other: PlanResult) -> None:
        self.accounts_checked += other.accounts_checked
        self.events_folded += other.events_folded
        self.corrections.extend(other.corrections)
        self.held.extend(other.held)

    def as_json(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "rules_version": self.rules_version,
            "rules_digest": self.rules_digest,
            "accounts_checked": self.accounts_checked,
            "accounts_disagreeing": self.accounts_disagreeing,
            "corrections": [c.as_json() for c in self.corrections],
            "held": [h.as_json() for h in self.held],
        }

    def held_lines(self) -> list[str]:
        """For the text summary: how many rows are held, by reason."""
        if not self.held:
            return []
        lines = [f"held, not corrected: {len(self.held)} rows in {len({h.account_id for h in self.held})} accounts "
                 "(`explain ACCOUNT` shows why)"]
        for reason, count in sorted(Counter(h.reason for h in self.held).items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {count:>6}  {reason}")
        return lines


def plan(dsns: Mapping[str, str], rules: Rules, as_of: datetime, *, account: str | None = None,
         workers: int = 2) -> PlanResult:
    catalog = fold_catalog(catalog_events(dsns["eventstore"]), as_of=as_of)
    ranges = [AccountRange(ids=(account,))] if account else account_ranges(dsns["eventstore"], workers)
    result = PlanResult(as_of=as_of, rules_version=rules.version, rules_digest=rules.digest)
    if len(ranges) == 1:
        result.merge(plan_range(dict(dsns), rules, as_of, catalog, ranges[0]))
        return result
    with worker_pool(len(ranges)) as pool:
        for part in pool.map(plan_range, *zip(*[(dict(dsns), rules, as_of, catalog, r) for r in ranges])):
            result.merge(part)
    return result


def plan_range(dsns: dict[str, str], rules: Rules, as_of: datetime, catalog: Catalog,
               accounts: AccountRange) -> PlanResult:
    """Plans one range of accounts: the unit of work of one process."""
    result = PlanResult(as_of=as_of, rules_version=rules.version, rules_digest=rules.digest)
    gc.freeze()  # what is alive now lives for the whole run; the collector need not walk it per account
    for events_folded, state, corrections, held in evaluate(dsns, rules, as_of, catalog, accounts, explain=False):
        result.events_folded += events_folded
        if state.account_exists:
            result.accounts_checked += 1
            result.corrections.extend(corrections)
            result.held.extend(held)
    return result


def evaluate(dsns: Mapping[str, str], rules: Rules, as_of: datetime, catalog: Catalog, accounts: AccountRange,
             *, explain: bool) -> Iterator[tuple[int, TrueState, list[Correction], list[HeldRow]]]:
    """Each account of the log in `accounts`, in id order: how many events it folded, its true state,
    its corrections (none for an account cf_prod does not know) and its held rows. Streams: one
    account at a time; the parked rows of the range are read once, before."""
    parked = parked_rows(dsns["eventstore"], accounts)
    legacy = [legacy_rows(dsns[store], store, accounts) for store in COMPARED_BY_STORE]
    for account_id, events, rows in by_account(account_events(dsns["eventstore"], accounts), legacy):
        state = true_state(fold(events, as_of=as_of), catalog, rules, as_of, explain=explain)
        corrections, held = hold(state, catalog, parked.get(account_id, ()), rows, corrections_for(state, rows))
        yield len(events), state, corrections, held
