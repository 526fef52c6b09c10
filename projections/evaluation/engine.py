"""The one evaluation engine: these accounts at T under these rules, from kept facts where they
stand, else from the log; each account once, in id order, one at a time.

    evaluate(source, rules, as_of, catalog, accounts, blocked=...) -> Evaluation...

Per account it gets the facts (kept facts that stand, else the fold of its events), decides
(domain/decide.py: true_state -> corrections_for -> hold) and withholds the corrections of a
blocked table (domain/held.withhold_blocked). With a `KeptStreams` source (sources.py) and
`kept_facts`, a kept decision or result that stands is used instead (kept_facts.py), and what a
full fold made is kept (one upsert per KEEP_BATCH accounts, written while the next are evaluated:
keeper.py); any other source is replayed.

Its callers: plan (projections/plan.py), apply's replan (apply/account_plans.py), the follower's
step (follow/evaluation.py), a backfill partition (read_model/partition.py) and the report
(report/data.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from domain.catalog import Catalog
from domain.decide import Decided, decide
from domain.diff import Correction, corrections_for
from domain.facts import AccountFacts
from domain.fold import fold
from domain.held import HeldRow, hold, withhold_blocked
from domain.outgoing import cause_keys
from domain.rules import Rules
from domain.state import TrueState
from domain.truth import decided_until, true_state
from eventlog.account_range import AccountRange
from eventlog.range_reads import TruthStream
from projections.evaluation.keeper import Keeper
from projections.evaluation.kept import Deciding, Replayed
from projections.evaluation.kept_facts import (
    Decision,
    Found,
    Keep,
    Known,
    decision_key,
    encode,
    encode_result,
    encode_state,
    keepable,
    parked_digest,
)
from projections.evaluation.sources import KeptStreams, Streams
from projections.legacy_rows import RowsDigests

KEEP_BATCH = 1_000  # accounts' facts per upsert


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One account evaluated. `state` is a `Known` (no state decoded) only when the caller asked
    for none (`states=False`) and a kept result stood."""

    account_id: str
    folded: int  # events read and folded (0: what was kept stood for them)
    state: TrueState | Known
    corrections: list[Correction]
    held: list[HeldRow]
    facts: AccountFacts | None = None  # what was decided from (None: a kept decision or result stood)
    head: int = 0  # the stream's version when folded (0: not folded)
    explained: tuple[TrueState, list[Correction]] | None = None  # `explain_corrected`: with reasons


# What the two ways of deciding yield: account, events folded, state, corrections, held, facts, head.
_Decided = tuple[str, int, TrueState | Known, list[Correction], list[HeldRow], AccountFacts | None, int]


def evaluate(source: Streams, rules: Rules, as_of: datetime, catalog: Catalog, accounts: AccountRange, *,
             blocked: Mapping[str, str], explain: bool = False, explain_corrected: bool = False,
             kept_facts: bool = True, states: bool = True) -> Iterator[Evaluation]:
    """Each account of the log in `accounts`, in id order. `explain`: every state with its reasons;
    `explain_corrected`: the accounts with corrections, their state again with the reasons their
    causes read (`Evaluation.explained`: what apply records as causes; domain/outgoing.cause_keys).
    `kept_facts=False` replays every stream (the exactness tests' and benchmarks' baseline). With `states=False`
    (plan: it needs only whether the account exists), an account whose kept result stands comes
    with that `Known`, its rows not read. The parked rows of the range are read once, before."""
    parked = source.parked(accounts)
    decided: Iterator[_Decided]
    if kept_facts and isinstance(source, KeptStreams):
        decided = _from_kept(source, rules, as_of, catalog, accounts, parked, explain=explain, states=states)
    else:
        decided = _replayed(source, rules, as_of, catalog, accounts, parked, explain=explain)
    for account_id, folded, state, corrections, held, facts, head in decided:
        corrections, held = withhold_blocked(corrections, held, blocked)
        explained = None
        if explain_corrected and corrections and state.account_exists and facts is not None:
            # the same state with the reasons the corrections' causes read (the corrections do not
            # depend on reasons: decided again, they are these)
            explained = (true_state(facts, catalog, rules, as_of, only=cause_keys(corrections)), corrections)
        yield Evaluation(account_id, folded, state, corrections, held, facts, head, explained)


def _replayed(source: Streams, rules: Rules, as_of: datetime, catalog: Catalog, accounts: AccountRange,
              parked: Mapping[str, Sequence[HeldRow]], *, explain: bool) -> Iterator[_Decided]:
    for account_id, events, rows in source.accounts(accounts):
        facts, count, head = _folded(events, as_of)
        yield (account_id, count, *decide(facts, rows, catalog, parked.get(account_id, ()), rules, as_of,
                                          explain=explain), facts, head)


def _folded(events: Replayed, as_of: datetime) -> tuple[AccountFacts, int, int]:
    """The facts at `as_of`, how many events the stream has, and its head version."""
    if isinstance(events, TruthStream):
        return fold(events.for_fold(as_of), as_of=as_of, legacy=False), events.count, events.head
    if isinstance(events, list):
        return fold(events, as_of=as_of, legacy=False), len(events), events[-1].originator_version if events else 0
    return events.fold_at(as_of)


def _from_kept(source: KeptStreams, rules: Rules, as_of: datetime, catalog: Catalog, accounts: AccountRange,
               parked: Mapping[str, Sequence[HeldRow]], *, explain: bool, states: bool) -> Iterator[_Decided]:
    keeping: list[Keep] = []
    key = decision_key(rules, catalog)
    # a kept decision has no reasons; a kept result no state
    deciding = None if explain else Deciding(key, rules, None if states else parked)
    with Keeper(source) as keeper:
        for account_id, (events, stored), rows, digests in source.kept_accounts(accounts, as_of, deciding):
            if stored is not None and stored.known is not None:  # what the standing decision found stands too
                yield account_id, 0, stored.known, stored.known.corrections, stored.known.held, None, 0
                continue
            account_parked = parked.get(account_id, ())
            if stored is not None and stored.decided is not None:  # the decision kept at an earlier T stands
                state = stored.decided
                corrections, held = hold(state, catalog, account_parked, rows, corrections_for(state, rows))
                if stored.decided_as_of is not None:
                    keeping.append(Keep(account_id, stored.stream_version, None, None, found=found(
                        (state, corrections, held), account_parked, digests), result_for=(stored.decided_as_of, key)))
                yield account_id, 0, state, corrections, held, None, 0
                continue
            if stored is not None and stored.facts is not None:
                facts, count, head = stored.facts, 0, 0
            else:
                facts, count, head = _folded(events, as_of)
            decision = decide(facts, rows, catalog, account_parked, rules, as_of, explain=explain)
            version: tuple[int, datetime | None] | None = (
                (stored.stream_version, None) if stored is not None
                else keepable(events.events if isinstance(events, TruthStream) else events, as_of, head or None))
            if version is not None and (stored is None or not explain):
                kept = None if explain else Decision(encode_state(decision[0]), as_of, decided_until(decision[0]), key,
                                                     found(decision, account_parked, digests))
                keeping.append(Keep(account_id, *version, None if stored is not None else encode(facts), kept))
                if len(keeping) >= KEEP_BATCH:
                    keeper.keep(keeping)  # written while the next accounts are evaluated
                    keeping = []
            yield account_id, count, *decision, facts, head
        keeper.keep(keeping)


def found(decision: Decided, parked: Sequence[HeldRow], digests: RowsDigests) -> Found:
    """What to keep of what the diff found from a decision, and what against (kept_facts.Found)."""
    state, corrections, held = decision
    return Found(encode_result(Known(state.account_exists, corrections, held)), parked_digest(parked), digests)
