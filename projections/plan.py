"""`plan`: the true state of every account (or one) against its legacy rows, as corrections.

The shell streams accounts through a `RangeReader` (projections/legacy_rows.py; unit tests give it
a fake) and calls the pure core for each, `plan_account`: fold -> true_state -> corrections_for ->
hold (domain/held.py: no correction for a row whose latest version ingest parked, nor for the
entitlements of a plan product_config does not know; those rows are listed as held). With
workers > 1 the accounts are split into ranges, one process each; every process streams its own
range, so memory is one account per process.

Kept facts (projections/read_model/facts_store.py): an account whose kept facts stand for a fold
at T (same fold version, stream not moved, T at or after the latest truth event they reflect) is
not replayed; every other one is, and after a full fold at a T past all its truth events its facts
are kept (one upsert per KEEP_BATCH accounts), with the decision made from them and what the diff
found against the live rows; when that still stands (facts_store.py: kept results) plan reads
neither the account's rows nor its state. `kept_facts=False` replays everything and keeps
nothing (the exactness test and the benchmarks). Keeping facts writes only the read model's own
table, never a legacy store or the log, and is skipped when the event store cannot be written.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from datetime import datetime
from typing import Any, Literal, overload

from domain.catalog import Catalog, fold_catalog
from domain.diff import Correction, corrections_for
from domain.events import AccountEvent
from domain.facts import AccountFacts
from domain.fold import fold
from domain.held import HeldRow, hold, withhold_blocked
from domain.owners import Owners
from domain.rules import Rules
from domain.state import TrueState
from domain.truth import decided_until, true_state
from eventlog.stores import Stores
from ingestion.legacy.schema import blocked_tables, describe
from projections.drift import attach_drift
from projections.executor import Executor, InlineExecutor
from projections.legacy_rows import (
    AccountRange, Deciding, RangeReader, StoreReader, account_ranges, catalog_events,
)
from projections.read_model.facts_store import (
    Decision, Found, Keep, Known, RowsDigests, decision_key, encode, encode_result, encode_state, keepable,
    parked_digest,
)

KEEP_BATCH = 1_000  # accounts' facts per upsert


@dataclass
class PlanResult:
    as_of: datetime
    rules_version: str
    rules_digest: str = ""
    accounts_checked: int = 0
    events_folded: int = 0
    accounts_read: int = 0  # streams of the log evaluated (an account cf_prod does not know too), folded or kept
    accounts_known: int = 0  # of those, the accounts whose kept result stood: rows not read, nothing diffed
    corrections: list[Correction] = field(default_factory=list)
    held: list[HeldRow] = field(default_factory=list)  # rows of the accounts checked that nothing is planned for
    blocked: dict[str, str] = field(default_factory=dict)  # "store.table" -> why: nothing of it corrected

    @property
    def accounts_disagreeing(self) -> int:
        return len({c.account_id for c in self.corrections})

    def merge(self, other: PlanResult) -> None:
        self.accounts_checked += other.accounts_checked
        self.events_folded += other.events_folded
        self.accounts_read += other.accounts_read
        self.accounts_known += other.accounts_known
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
            "blocked": dict(sorted(self.blocked.items())),
        }

    def held_lines(self) -> list[str]:
        """For the text summary: how many rows are held, by reason."""
        lines = [f"{line}: nothing of it is corrected until its schema matches again" for line in describe(self.blocked)]
        if not self.held:
            return lines
        lines += [f"held, not corrected: {len(self.held)} rows in {len({h.account_id for h in self.held})} accounts "
                 "(`explain ACCOUNT` shows why)"]
        for reason, count in sorted(Counter(h.reason for h in self.held).items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {count:>6}  {reason}")
        return lines


def plan(dsns: Mapping[str, str], rules: Rules, as_of: datetime, *, account: str | None = None,
         workers: int = 2, kept_facts: bool = True, executor: Executor | None = None,
         on_progress: Callable[[int, int], None] = lambda done, total: None,
         owners: Owners | None = Owners()) -> PlanResult:
    """Every account (or one) planned: the accounts split into `workers` ranges, each range a piece
    of work for `executor` (the Dask one from bootstrap; one account or range runs here).
    `kept_facts=False` replays every stream (the benchmarks' and the exactness tests' baseline).
    Each correction says where its drift came from (projections/drift.py) by `owners`; None: not
    said (apply, which says it for the corrections it writes)."""
    catalog = fold_catalog(catalog_events(dsns["eventstore"]), as_of=as_of)
    ranges = [AccountRange(ids=(account,))] if account else account_ranges(dsns["eventstore"], workers)
    result = PlanResult(as_of=as_of, rules_version=rules.version, rules_digest=rules.digest,
                        blocked=blocked_tables(Stores.from_dsns(dsns)))
    if len(ranges) == 1 or executor is None:
        executor = InlineExecutor()
    on_progress(0, len(ranges))
    task = partial(plan_range, dict(dsns), rules, as_of, catalog, kept_facts=kept_facts, blocked=result.blocked,
                   owners=owners)
    for done, part in enumerate(executor.map(task, ranges), 1):
        result.merge(part)
        on_progress(done, len(ranges))
    return result


def plan_range(dsns: dict[str, str], rules: Rules, as_of: datetime, catalog: Catalog,
               accounts: AccountRange, reader: RangeReader | None = None, kept_facts: bool = True,
               blocked: Mapping[str, str] | None = None, owners: Owners | None = None) -> PlanResult:
    """Plans one range of accounts: the unit of work of one process (`blocked`: evaluate's; with
    `owners`, each correction with its drift)."""
    result = PlanResult(as_of=as_of, rules_version=rules.version, rules_digest=rules.digest)
    gc.freeze()  # what is alive now lives for the whole run; the collector need not walk it per account
    for events_folded, state, corrections, held in evaluate(dsns, rules, as_of, catalog, accounts, explain=False,
                                                             reader=reader, kept_facts=kept_facts, states=False,
                                                             blocked=blocked):
        result.events_folded += events_folded
        result.accounts_read += 1
        result.accounts_known += isinstance(state, Known)
        if state.account_exists:
            result.accounts_checked += 1
            result.corrections.extend(corrections)
            result.held.extend(held)
    if owners is not None and result.corrections:
        result.corrections = attach_drift(dsns["eventstore"], catalog, rules, as_of, result.corrections, owners)
    return result


Evaluated = tuple[int, TrueState, list[Correction], list[HeldRow]]


@overload
def evaluate(dsns: Mapping[str, str], rules: Rules, as_of: datetime, catalog: Catalog, accounts: AccountRange,
             *, explain: bool, reader: RangeReader | None = None, kept_facts: bool = True,
             states: Literal[True] = True, blocked: Mapping[str, str] | None = None) -> Iterator[Evaluated]: ...


@overload
def evaluate(dsns: Mapping[str, str], rules: Rules, as_of: datetime, catalog: Catalog, accounts: AccountRange,
             *, explain: bool, reader: RangeReader | None = None, kept_facts: bool = True,
             states: Literal[False], blocked: Mapping[str, str] | None = None
             ) -> Iterator[tuple[int, TrueState | Known, list[Correction], list[HeldRow]]]: ...


def evaluate(dsns: Mapping[str, str], rules: Rules, as_of: datetime, catalog: Catalog, accounts: AccountRange,
             *, explain: bool, reader: RangeReader | None = None, kept_facts: bool = True, states: bool = True,
             blocked: Mapping[str, str] | None = None
             ) -> Iterator[tuple[int, TrueState | Known, list[Correction], list[HeldRow]]]:
    """Each account of the log in `accounts`, in id order: how many events it folded (0 when its
    kept facts, or the decision kept beside them, stood for them: facts_store.py), its true state,
    its corrections (none for an account cf_prod does not know) and its held rows. With
    `states=False` (plan: it needs only whether the account exists), an account whose kept result
    stands comes with that `Known` instead of its state, its rows not read. Streams: one account
    at a time; the parked rows of the range are read once, before. `reader` is what it reads from
    (default: the stores of `dsns`). No correction of a `blocked` table is yielded (domain/held.py
    withhold_blocked; default: the tables blocked now, ingestion/legacy/schema.py, when it reads
    the stores of `dsns`): its rows are held instead, with why."""
    if blocked is None:
        blocked = blocked_tables(Stores.from_dsns(dsns)) if reader is None else {}
    for folded, state, corrections, held in _evaluate(dsns, rules, as_of, catalog, accounts, explain=explain,
                                                      reader=reader, kept_facts=kept_facts, states=states):
        yield folded, state, *withhold_blocked(corrections, held, blocked)


def _evaluate(dsns: Mapping[str, str], rules: Rules, as_of: datetime, catalog: Catalog, accounts: AccountRange,
              *, explain: bool, reader: RangeReader | None, kept_facts: bool, states: bool
              ) -> Iterator[tuple[int, TrueState | Known, list[Correction], list[HeldRow]]]:
    reader = reader or StoreReader(dsns)
    parked = reader.parked(accounts)
    if not kept_facts:
        for account_id, events, rows in reader.accounts(accounts):
            yield len(events), *decide(fold(events, as_of=as_of, legacy=False), rows, catalog,
                                       parked.get(account_id, ()), rules, as_of, explain=explain)
        return
    keeping: list[Keep] = []
    key = decision_key(rules, catalog)
    # a kept decision has no reasons; a kept result no state
    decided = None if explain else Deciding(key, rules, None if states else parked)
    for account_id, (events, stored), rows, digests in reader.kept_accounts(accounts, as_of, decided):
        if stored is not None and stored.known is not None:  # what the standing decision found stands too
            yield 0, stored.known, stored.known.corrections, stored.known.held
            continue
        account_parked = parked.get(account_id, ())
        if stored is not None and stored.decided is not None:  # the decision kept at an earlier T stands
            state = stored.decided
            corrections, held = hold(state, catalog, account_parked, rows, corrections_for(state, rows))
            if stored.decided_as_of is not None:
                keeping.append(Keep(account_id, stored.stream_version, None, None, found=found(
                    state, corrections, held, account_parked, digests), result_for=(stored.decided_as_of, key)))
            yield 0, state, corrections, held
            continue
        facts = stored.facts if stored is not None and stored.facts is not None else fold(events, as_of=as_of,
                                                                                             legacy=False)
        state, corrections, held = decide(facts, rows, catalog, account_parked, rules, as_of, explain=explain)
        version = (stored.stream_version, None) if stored is not None else keepable(events, as_of)
        if version is not None and (stored is None or not explain):
            decision = None if explain else Decision(encode_state(state), as_of, decided_until(state), key,
                                                     found(state, corrections, held, account_parked, digests))
            keeping.append(Keep(account_id, *version, None if stored is not None else encode(facts), decision))
            if len(keeping) >= KEEP_BATCH:
                reader.keep(keeping)
                keeping = []
        yield len(events), state, corrections, held
    reader.keep(keeping)


def found(state: TrueState, corrections: list[Correction], held: list[HeldRow], parked: Sequence[HeldRow],
          digests: RowsDigests) -> Found:
    """What to keep of what the diff found from a decision, and what against (facts_store.Found)."""
    return Found(encode_result(Known(state.account_exists, corrections, held)), parked_digest(parked), digests)


def plan_account(events: Sequence[AccountEvent], rows: Mapping[str, Sequence[dict]], catalog: Catalog,
                 parked: Sequence[HeldRow], rules: Rules, as_of: datetime, *, explain: bool = False
                 ) -> tuple[TrueState, list[Correction], list[HeldRow]]:
    """Pure: one account's true state, the corrections of its legacy `rows` that no held row
    withholds, and its held rows (fold -> true_state -> corrections_for -> hold)."""
    return decide(fold(events, as_of=as_of, legacy=False), rows, catalog, parked, rules, as_of, explain=explain)


def decide(facts: AccountFacts, rows: Mapping[str, Sequence[dict]], catalog: Catalog, parked: Sequence[HeldRow],
           rules: Rules, as_of: datetime, *, explain: bool = False) -> tuple[TrueState, list[Correction], list[HeldRow]]:
    """Pure: `plan_account` from the account's facts (folded now, or kept; backfill folds once for two rules)."""
    state = true_state(facts, catalog, rules, as_of, explain=explain)
    corrections, held = hold(state, catalog, parked, rows, corrections_for(state, rows))
    return state, corrections, held
