"""The evaluation engine (projections/evaluation/engine.py) and plan's range over a fake reader: no database.

The fake holds the log's events and the legacy rows in memory and streams them as the real
reader does (sorted by account, merged by `by_account`); the per-account decision is the pure
`plan_account` (domain/decide.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import pytest
from freezegun import freeze_time

from domain.decide import plan_account
from domain.diff import Correction
from domain.events import AccountEvent
from domain.fold import FOLD_VERSION
from domain.held import HeldRow
from domain.outgoing import cause_keys, causes
from domain.rules import RULES_V1
from eventlog.account_range import AccountRange
from projections.evaluation.engine import evaluate
from projections.evaluation.kept import Source, Stored, rows_wanted
from projections.evaluation.kept_facts import Found, Keep, Kept, decode, usable
from projections.evaluation.sources import Streams
from projections.legacy_rows import by_account
from projections.plan import plan_range
from tests.support.builders import ACCOUNT, SECOND, T0, a_catalog, an_account, now, past_due

OTHER = "acc_000007"  # sorts before ACCOUNT
THIRD = "acc_000099"


@pytest.fixture(autouse=True)
def frozen():
    with freeze_time(T0):
        yield


def of(account: str, events: list[AccountEvent]) -> list[AccountEvent]:
    """The builders' events (made for ACCOUNT) as events of `account`."""
    return [e.model_copy(update={"originator_id": account}) for e in events]


def accounts_row(account: str, status: str = "active") -> dict:
    return {"account_id": account, "name": "Acme", "plan": "pro", "status": status}


def agreeing(account: str, **tables: list[dict]) -> dict[str, list[dict]]:
    """The legacy rows of an active pro account in good standing (an_account()); pass a table
    ("store__table") to replace it."""
    rows = {
        "cf_prod.accounts": [accounts_row(account)],
        "cf_prod.entitlements": [{"account_id": account, "feature": f, "enabled": True, "source": "plan"}
                                 for f in ("api", "docs", "sso")],
        "subs.subs_account": [{"account_id": account, "bad_debt": False, "delinquent": False}],
    }
    rows.update({name.replace("__", "."): value for name, value in tables.items()})
    return rows


def summary(corrections: list[Correction]) -> list[tuple]:
    return [(c.account_id, c.table, c.op, c.column, c.from_, c.to) for c in corrections]


@dataclass
class FakeReader:
    """A `KeptStreams` over in-memory events and rows; it notes what it was asked to read."""

    events: dict[str, list[AccountEvent]]
    rows: dict[str, dict[str, list[dict]]] = field(default_factory=dict)
    parked_rows: dict[str, list[HeldRow]] = field(default_factory=dict)
    reads: list[tuple[str, AccountRange]] = field(default_factory=list)
    kept: dict[str, Keep] = field(default_factory=dict)  # what `keep` was given, by account

    def parked(self, accounts: AccountRange) -> Mapping[str, Sequence[HeldRow]]:
        self.reads.append(("parked", accounts))
        return {a: held for a, held in self.parked_rows.items() if _within(a, accounts)}

    def accounts(self, accounts: AccountRange) -> Iterator[tuple[str, list[AccountEvent], dict[str, list[dict]]]]:
        self.reads.append(("accounts", accounts))
        log = ((a, self.events[a]) for a in sorted(self.events) if _within(a, accounts))
        legacy = [(a, self.rows[a], None) for a in sorted(self.rows) if _within(a, accounts)]
        return ((a, events, rows) for a, events, rows, _ in by_account(log, [iter(legacy)]))

    def kept_accounts(self, accounts: AccountRange, as_of: datetime, decided=None
                      ) -> Iterator[tuple[str, Source, dict[str, list[dict]], tuple]]:
        """As the real reader: kept facts where `usable` says they stand for the fold, else the events."""
        for account_id, events, rows in self.accounts(accounts):
            k = self.kept.get(account_id)
            meta = k and Kept(account_id, k.stream_version, k.latest_source_time, FOLD_VERSION)
            if usable(meta, max(e.originator_version for e in events), as_of):
                yield account_id, ([], Stored(k.stream_version, facts=decode(k.facts, as_of))), rows, (None,)
            else:
                yield account_id, (events, None), rows, (None,)

    def keep(self, rows: Sequence[Keep]) -> None:
        self.kept.update({k.account_id: k for k in rows if k.facts is not None})  # (it keeps no decisions)


@dataclass
class StreamsOnly:
    """A `Streams` and no more (as a follower's step): what it reads is replayed, nothing kept."""

    fake: FakeReader

    def parked(self, accounts: AccountRange) -> Mapping[str, Sequence[HeldRow]]:
        return self.fake.parked(accounts)

    def accounts(self, accounts: AccountRange) -> Iterator[tuple[str, list[AccountEvent], dict[str, list[dict]]]]:
        return self.fake.accounts(accounts)


def _within(account: str, accounts: AccountRange) -> bool:
    return accounts.holds(account)


EVERY_ACCOUNT = AccountRange()


def run(reader: Streams, accounts: AccountRange = EVERY_ACCOUNT, *, as_of: datetime | None = None, **options):
    """(events folded, state, corrections, held) of each account the engine evaluates."""
    return [(e.folded, e.state, e.corrections, e.held)
            for e in evaluate(reader, RULES_V1, as_of or now(), a_catalog(), accounts, blocked={}, **options)]


def corrections_of(results, account: str) -> list[Correction]:
    return [c for _, state, corrections, _ in results if state.account_id == account for c in corrections]


def test_a_drifting_account_gets_exactly_its_corrections_and_the_others_none():
    reader = FakeReader(events={ACCOUNT: an_account(), OTHER: of(OTHER, an_account())},
                        rows={ACCOUNT: agreeing(ACCOUNT, cf_prod__accounts=[accounts_row(ACCOUNT, "suspended")]),
                              OTHER: agreeing(OTHER)})

    results = run(reader)

    assert summary(corrections_of(results, ACCOUNT)) == [
        (ACCOUNT, "cf_prod.accounts", "update", "status", "suspended", "active")]
    assert corrections_of(results, OTHER) == []
    assert [n for n, *_ in results] == [len(an_account())] * 2


def test_an_account_cf_prod_does_not_know_gets_no_corrections_and_is_not_counted():
    only_invoices = of(OTHER, past_due(days=20, attempts=2).events())  # no cf_prod.accounts row in its log
    drifting = agreeing(OTHER, cf_prod__accounts=[accounts_row(OTHER, "suspended")],
                        billing_prod__dunning=[{"account_id": OTHER, "stage": "none"}])
    reader = FakeReader(events={OTHER: only_invoices, ACCOUNT: an_account()},
                        rows={OTHER: drifting,
                              ACCOUNT: agreeing(ACCOUNT, cf_prod__accounts=[accounts_row(ACCOUNT, "suspended")])})

    results = run(reader)

    (unknown,) = [state for _, state, _, _ in results if state.account_id == OTHER]
    assert not unknown.account_exists and corrections_of(results, OTHER) == []
    planned = plan_range({}, RULES_V1, now(), a_catalog(), AccountRange(), reader=FakeReader(
        events=reader.events, rows=reader.rows))
    assert planned.accounts_checked == 1
    assert summary(planned.corrections) == [(ACCOUNT, "cf_prod.accounts", "update", "status", "suspended", "active")]
    assert planned.events_folded == len(only_invoices) + len(an_account())


def test_a_held_row_withholds_its_correction_and_is_listed():
    sso_off = [{"account_id": ACCOUNT, "feature": f, "enabled": f != "sso", "source": "plan"}
               for f in ("api", "docs", "sso")]
    rows = {ACCOUNT: agreeing(ACCOUNT, cf_prod__accounts=[accounts_row(ACCOUNT, "suspended")],
                              cf_prod__entitlements=sso_off)}
    parked = HeldRow(account_id=ACCOUNT, table="cf_prod.accounts", key={"account_id": ACCOUNT},
                     reason="unknown status 'frozen'", parked_at=now())

    results = run(FakeReader(events={ACCOUNT: an_account()}, rows=rows, parked_rows={ACCOUNT: [parked]}))

    assert summary(corrections_of(results, ACCOUNT)) == [
        (ACCOUNT, "cf_prod.entitlements", "update", "enabled", False, True)]
    assert [h for _, _, _, h in results] == [[parked]]


def test_accounts_are_evaluated_once_each_in_id_order_parked_rows_read_once_before():
    events = {THIRD: of(THIRD, an_account()), ACCOUNT: an_account(), OTHER: of(OTHER, an_account())}
    rows = {"acc_000001": agreeing("acc_000001"), **{a: agreeing(a) for a in events}}  # acc_000001: not in the log
    reader = FakeReader(events=events, rows=rows)
    accounts = AccountRange()

    results = run(reader, accounts)

    assert [state.account_id for _, state, _, _ in results] == [OTHER, ACCOUNT, THIRD]
    assert reader.reads == [("parked", accounts), ("accounts", accounts)]


def test_a_range_plans_only_its_accounts():
    reader = FakeReader(events={a: of(a, an_account()) for a in (OTHER, ACCOUNT, THIRD)})
    results = run(reader, AccountRange(ids=(ACCOUNT, THIRD)))
    assert [state.account_id for _, state, _, _ in results] == [ACCOUNT, THIRD]


def test_the_shell_yields_what_the_pure_per_account_decision_says():
    rows = agreeing(ACCOUNT, cf_prod__accounts=[accounts_row(ACCOUNT, "suspended")])
    parked = [HeldRow(account_id=ACCOUNT, table="cf_prod.entitlements", key={"account_id": ACCOUNT, "feature": "sso"},
                      reason="unknown source 'vip'", parked_at=now())]
    events = an_account()
    ((folded, state, corrections, held),) = run(FakeReader(events={ACCOUNT: events}, rows={ACCOUNT: rows},
                                                            parked_rows={ACCOUNT: parked}))
    assert (state, corrections, held) == plan_account(events, rows, a_catalog(), parked, RULES_V1, now())
    assert folded == len(events) and corrections and held == parked


def test_a_second_plan_uses_the_kept_facts_and_plans_the_same():
    reader = FakeReader(events={ACCOUNT: an_account(invoice=past_due(days=20, attempts=2)), OTHER: of(OTHER, an_account())},
                        rows={ACCOUNT: agreeing(ACCOUNT), OTHER: agreeing(OTHER)})
    first = run(reader)
    assert sorted(reader.kept) == [OTHER, ACCOUNT]

    second = run(reader)

    assert [n for n, *_ in second] == [0, 0]
    assert [r[1:] for r in second] == [r[1:] for r in first]


def test_a_stream_that_moved_since_its_facts_were_kept_is_folded_again():
    reader = FakeReader(events={ACCOUNT: an_account()}, rows={ACCOUNT: agreeing(ACCOUNT)})
    run(reader)
    reader.events[ACCOUNT] = [*reader.events[ACCOUNT],
                              *of(ACCOUNT, past_due(days=20, attempts=2).events())]  # appended: the head moved

    ((folded, state, corrections, _),) = run(reader)

    assert folded == len(reader.events[ACCOUNT]) and state.stage != "none"
    assert (state, corrections) == plan_account(reader.events[ACCOUNT], agreeing(ACCOUNT), a_catalog(), [], RULES_V1,
                                                now())[:2]


def test_a_t_before_the_latest_event_the_truth_reads_replays_and_keeps_nothing():
    events = an_account(invoice=past_due(days=20, attempts=2))
    reader = FakeReader(events={ACCOUNT: events}, rows={ACCOUNT: agreeing(ACCOUNT)})
    run(reader)
    earlier = max(e.source_time for e in events) - SECOND
    kept_before = dict(reader.kept)

    ((folded, state, _, _),) = run(reader, as_of=earlier)

    assert folded == len(events) and reader.kept == kept_before
    assert state == plan_account(events, agreeing(ACCOUNT), a_catalog(), [], RULES_V1, earlier)[0]


def test_a_source_that_keeps_nothing_is_replayed_each_time():
    fake = FakeReader(events={ACCOUNT: an_account(), OTHER: of(OTHER, an_account())},
                      rows={ACCOUNT: agreeing(ACCOUNT), OTHER: agreeing(OTHER)})
    first, second = run(StreamsOnly(fake)), run(StreamsOnly(fake))
    assert [n for n, *_ in second] == [len(an_account())] * 2 and second == first and fake.kept == {}


def test_an_account_with_corrections_is_read_once_and_its_state_made_again_with_the_reasons_its_causes_read():
    rows = {ACCOUNT: agreeing(ACCOUNT, cf_prod__accounts=[accounts_row(ACCOUNT, "suspended")]), OTHER: agreeing(OTHER)}
    events = an_account()
    fake = FakeReader(events={ACCOUNT: events, OTHER: of(OTHER, an_account())}, rows=rows)

    evaluated = list(evaluate(StreamsOnly(fake), RULES_V1, now(), a_catalog(), AccountRange(), blocked={},
                              explain_corrected=True))

    assert fake.reads == [("parked", AccountRange()), ("accounts", AccountRange())]
    other, mine = evaluated
    assert other.explained is None and not mine.state.because
    state, corrections = mine.explained
    whole, again, _ = plan_account(events, rows[ACCOUNT], a_catalog(), [], RULES_V1, now(), explain=True)
    assert corrections == again and corrections is mine.corrections
    assert state.model_dump(exclude={"because"}) == whole.model_dump(exclude={"because"})
    assert cause_keys(corrections) & set(whole.because) <= set(state.because) < set(whole.because)
    assert {k: state.because[k] for k in state.because} == {k: whole.because[k] for k in state.because}
    assert [causes(c, state) for c in corrections] == [causes(c, whole) for c in corrections]


def test_the_rows_read_are_those_of_the_streams_whose_kept_result_does_not_stand_by_the_shorter_list():
    found = Found(b"", None, (None, None, None))
    heads = {OTHER: 3, ACCOUNT: 5, THIRD: 2, "acc_1": 1}
    assert rows_wanted(heads, {}) == {}, "nothing stands: every row of the range"
    assert rows_wanted(heads, dict.fromkeys(heads, found)) == {"only": []}, "all stand: none read"
    assert rows_wanted(heads, dict.fromkeys([OTHER, ACCOUNT, THIRD], found)) == {"only": ["acc_1"]}
    assert rows_wanted(heads, {THIRD: found}) == {"skip": [THIRD]}


def test_a_batch_of_kept_facts_is_written_while_the_next_accounts_are_evaluated(monkeypatch):
    monkeypatch.setattr("projections.evaluation.engine.KEEP_BATCH", 2)
    evaluated_next = threading.Event()
    written: list[tuple[list[str], bool]] = []

    class SlowToKeep(FakeReader):
        def keep(self, rows: Sequence[Keep]) -> None:
            # the first batch waits for the account after it (a keep that blocks the evaluation never sees it)
            written.append(([k.account_id for k in rows], bool(written) or evaluated_next.wait(timeout=10)))
            super().keep(rows)

    reader = SlowToKeep(events={a: of(a, an_account()) for a in (OTHER, ACCOUNT, THIRD)},
                        rows={a: agreeing(a) for a in (OTHER, ACCOUNT, THIRD)})
    for e in evaluate(reader, RULES_V1, now(), a_catalog(), EVERY_ACCOUNT, blocked={}):
        if e.account_id == THIRD:
            evaluated_next.set()

    assert written == [([OTHER, ACCOUNT], True), ([THIRD], True)], "the first batch written beside the next account"
    assert sorted(reader.kept) == [OTHER, ACCOUNT, THIRD], "everything is kept once the evaluation is over"
