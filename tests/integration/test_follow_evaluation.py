"""The follower's evaluation (events through its StreamCache, each account's fold carried on from the
step before, reasons only for the corrected and only those their causes read) says exactly what the
engine says reading every stream whole with every reason, over a generated fleet, also after the
streams moved under a warm cache and kept folds: the same states, corrections and causes."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

from domain.catalog import fold_catalog
from domain.outgoing import bookkeeping, causes
from domain.rules import RULES_V1
from eventlog.account_range import AccountRange
from eventlog.range_reads import catalog_events, logged_accounts
from eventlog.stores import Stores
from ingestion.legacy.schema import blocked_tables
from projections.evaluation.engine import evaluate
from projections.evaluation.sources import StoreReader
from projections.follow.evaluation import evaluate_accounts, read_step
from projections.follow.folds import KeptFolds
from projections.follow.streams import StreamCache
from tests.support.fleet import FLEET_NOW, a_fleet


def _old_path(dsns, accounts, now):
    catalog = fold_catalog(catalog_events(Stores.from_dsns(dsns)), as_of=now)
    found = {}
    for e in evaluate(StoreReader(Stores.from_dsns(dsns)), RULES_V1, now, catalog, AccountRange(ids=tuple(accounts)),
                      blocked=blocked_tables(Stores.from_dsns(dsns)), explain=True, kept_facts=False):
        found[e.account_id] = (e.state, e.corrections)
    return found


def _new_path(dsns, cache, folds, accounts, now):
    stores = Stores.from_dsns(dsns)
    catalog = fold_catalog(catalog_events(stores), as_of=now)
    with psycopg.connect(dsns["eventstore"], autocommit=True) as conn:
        step = read_step(stores, conn, cache, accounts, folds=folds)
    return evaluate_accounts(stores, step, RULES_V1, now, catalog, accounts)


def _said(state, corrections):
    """What a plan's state and corrections become once applied: the state but for its reasons, and
    each correction with its causes and bookkeeping."""
    return (state.model_dump(exclude={"because"}),
            [(c, causes(c, state), bookkeeping(c, state)) for c in corrections])


def _same(dsns, cache, folds, accounts, now):
    old = _old_path(dsns, accounts, now)
    evaluated, plans = _new_path(dsns, cache, folds, accounts, now)
    assert {s.account_id: (s.model_dump(exclude={"because"}), c) for s, c in evaluated} == {
        a: (s.model_dump(exclude={"because"}), c) for a, (s, c) in old.items()}
    assert {p.state.account_id: _said(p.state, p.corrections) for p in plans} == {
        a: _said(s, c) for a, (s, c) in old.items() if c and s.account_exists}
    assert all(set(p.state.because) < set(old[p.state.account_id][0].because) for p in plans)  # fewer reasons
    return plans


def test_the_followers_evaluation_agrees_with_plans_loop_over_a_fleet_also_after_its_streams_moved(tmp_path):
    with a_fleet(tmp_path, accounts=120, drifting=30) as fleet:
        accounts = logged_accounts(Stores.from_dsns(fleet.dsns))
        cache, folds = StreamCache(), KeptFolds()
        assert _same(fleet.dsns, cache, folds, accounts, FLEET_NOW)  # the fleet drifts: there is something to plan
        with psycopg.connect(fleet.dsns["subs"]) as conn:  # the streams move: a re-ingest appends to some
            conn.execute("UPDATE subs_dunning SET stage = 'retrying' WHERE account_id = ANY(%s)", (accounts[:15],))
        fleet.recompute("ingest")
        read = cache.read_events
        _same(fleet.dsns, cache, folds, accounts, datetime.now(UTC))
        assert 0 < cache.read_events - read < read  # only what was appended was read again
        assert folds.folded_again < 2 * len(accounts)  # and folds went on from the first evaluation's
