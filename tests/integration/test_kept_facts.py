"""Kept facts (projections/evaluation/kept_facts.py) change how fast `plan` is, never what it says.

Over a whole generated fleet, `plan` with kept facts prints the same corrections as a full replay
(`kept_facts=False`), and as the fold that keeps the observed rows: on an unchanged log, after
some streams moved (a truth event and an observed-only row appended), and for an earlier T.
"""

from __future__ import annotations

from datetime import timedelta

import orjson
import psycopg
import pytest

from domain.catalog import fold_catalog
from domain.diff import corrections_for
from domain.fold import fold
from domain.held import hold
from domain.rules import RULES_V1
from domain.truth import true_state
from eventlog.account_range import AccountRange
from eventlog.range_reads import catalog_events
from eventlog.stores import Stores
from projections.evaluation.kept_facts import Decision, DecisionKey, Keep, keep
from projections.evaluation.sources import StoreReader
from projections.executor import InlineExecutor
from projections.plan import plan
from projections.read_model.tables import ensure_read_model
from tests.support.fleet import FLEET_NOW, a_fleet

pytestmark = pytest.mark.integration


def corrections(result) -> bytes:
    return orjson.dumps(result.as_json())


def with_observed_rows(dsns, as_of) -> bytes:
    """The plan as it was before kept facts: each account folded with every event (facts.legacy too)."""
    catalog = fold_catalog(catalog_events(Stores.from_dsns(dsns)), as_of=as_of)
    reader = StoreReader(Stores.from_dsns(dsns))
    parked = reader.parked(AccountRange())
    found = []
    for account_id, events, rows in reader.accounts(AccountRange()):
        state = true_state(fold(events, as_of=as_of), catalog, RULES_V1, as_of, explain=False)
        if state.account_exists:
            found += hold(state, catalog, parked.get(account_id, ()), rows, corrections_for(state, rows))[0]
    return orjson.dumps([c.as_json() for c in found])


def kept_rows(dsns) -> dict[str, tuple]:
    with psycopg.connect(dsns["eventstore"]) as conn:
        return {r[0]: r[1:] for r in conn.execute(
            "SELECT account_id, stream_version, latest_source_time, fold_version FROM read_model_facts")}


def heads(dsns) -> dict[str, int]:
    with psycopg.connect(dsns["eventstore"]) as conn:
        return dict(conn.execute("SELECT originator_id, max(originator_version) FROM recompute_events GROUP BY 1"))


def test_plan_with_kept_facts_says_what_a_full_replay_says_before_and_after_streams_move(tmp_path):
    with a_fleet(tmp_path, accounts=200, drifting=30) as fleet:
        dsns = fleet.dsns
        full = plan(Stores.from_dsns(dsns), RULES_V1, FLEET_NOW, kept_facts=False)
        assert kept_rows(dsns) == {}, "a full replay keeps nothing"

        first = plan(Stores.from_dsns(dsns), RULES_V1, FLEET_NOW)
        kept = kept_rows(dsns)
        second = plan(Stores.from_dsns(dsns), RULES_V1, FLEET_NOW)

        assert corrections(first) == corrections(second) == corrections(full)
        # the per-account reader below says nothing of where drift came from: compared without it
        assert orjson.dumps([c.model_copy(update={"drift": None}).as_json() for c in full.corrections]) \
            == with_observed_rows(dsns, FLEET_NOW)
        assert len(kept) > 0.9 * full.accounts_checked, "the facts of (nearly) every account are kept"
        assert second.events_folded < 0.1 * full.events_folded
        assert second.accounts_known > 0.9 * full.accounts_checked, "the second plan stands on the kept results"

        moved = sorted(kept)[::10]
        with psycopg.connect(dsns["billing_prod"]) as conn:
            conn.execute("UPDATE invoices SET status = 'void', updated_at = %s WHERE account_id = ANY(%s) "
                         "AND invoice_id IN (SELECT max(invoice_id) FROM invoices GROUP BY account_id)",
                         (FLEET_NOW - timedelta(hours=1), moved[::2]))
        with psycopg.connect(dsns["subs"]) as conn:  # observed only, timed at the snapshot read (after T)
            conn.execute("UPDATE subs_account SET delinquent = NOT delinquent WHERE account_id = ANY(%s)",
                         (moved[1::2],))
        fleet.recompute("ingest", "--source", "billing_prod")
        fleet.recompute("ingest", "--source", "subs")

        full_after = plan(Stores.from_dsns(dsns), RULES_V1, FLEET_NOW, kept_facts=False)
        after = plan(Stores.from_dsns(dsns), RULES_V1, FLEET_NOW)

        assert corrections(after) == corrections(full_after) != corrections(full)
        assert 0 < after.events_folded < 0.3 * full_after.events_folded, "only the moved streams are folded"
        refreshed = kept_rows(dsns)
        moved_heads = {a: head for a, head in heads(dsns).items() if a in kept and head > kept[a][0]}
        assert moved_heads and {a: refreshed[a][0] for a in moved_heads} == moved_heads, "their facts are kept anew"
        assert plan(Stores.from_dsns(dsns), RULES_V1, FLEET_NOW).events_folded < after.events_folded

        earlier = FLEET_NOW - timedelta(days=20)
        assert corrections(plan(Stores.from_dsns(dsns), RULES_V1, earlier)) == corrections(
            plan(Stores.from_dsns(dsns), RULES_V1, earlier, kept_facts=False))
        assert kept_rows(dsns) == refreshed, "a fold at an earlier T keeps nothing"


def test_plan_on_a_read_only_event_store_uses_the_kept_facts_and_writes_none(tmp_path):
    with a_fleet(tmp_path, accounts=60, drifting=10) as fleet:
        dsns = fleet.dsns
        full = plan(Stores.from_dsns(dsns), RULES_V1, FLEET_NOW, kept_facts=False)
        expected = corrections(full)
        read_only = {**dsns, "eventstore": dsns["eventstore"] + " options='-c default_transaction_read_only=on'"}

        assert corrections(plan(Stores.from_dsns(read_only), RULES_V1, FLEET_NOW)) == expected
        assert kept_rows(dsns) == {}, "nothing was written"
        plan(Stores.from_dsns(dsns), RULES_V1, FLEET_NOW)
        again = plan(Stores.from_dsns(read_only), RULES_V1, FLEET_NOW)
        assert corrections(again) == expected and again.events_folded < 0.1 * full.events_folded


def decisions(dsns) -> dict[str, tuple]:
    """account -> (decided_as_of, decided_until, decided_rules_digest) of the kept decisions."""
    with psycopg.connect(dsns["eventstore"]) as conn:
        return {r[0]: r[1:] for r in conn.execute(
            "SELECT account_id, decided_as_of, decided_until, decided_rules_digest FROM read_model_facts "
            "WHERE decided_state IS NOT NULL")}


def test_kept_decisions_say_what_a_full_replay_says_later_and_after_the_catalog_rules_or_streams_change(tmp_path):
    with a_fleet(tmp_path, accounts=200, drifting=30) as fleet:
        dsns = fleet.dsns
        t0 = FLEET_NOW
        plan(Stores.from_dsns(dsns), RULES_V1, t0)  # folds everything, keeps the facts and the decisions at t0
        decided = decisions(dsns)
        assert len(decided) > 0.9 * len(kept_rows(dsns)) and {d[0] for d in decided.values()} == {t0}
        assert corrections(plan(Stores.from_dsns(dsns), RULES_V1, t0)) == corrections(plan(Stores.from_dsns(dsns), RULES_V1, t0, kept_facts=False))
        assert decisions(dsns) == decided, "standing decisions are used, not made again"

        t1 = t0 + timedelta(days=4)  # some accounts' next_action_at (or an invoice falling due) comes before t1
        ending = {a for a, (_, until, _) in decided.items() if until is not None and until <= t1}
        assert ending and len(ending) < len(decided)
        assert corrections(plan(Stores.from_dsns(dsns), RULES_V1, t1)) == corrections(plan(Stores.from_dsns(dsns), RULES_V1, t1, kept_facts=False))
        at_t1 = decisions(dsns)
        assert {a for a, d in at_t1.items() if d[0] == t1} == ending, "exactly the ended decisions are made again"
        assert corrections(plan(Stores.from_dsns(dsns), RULES_V1, t1)) == corrections(plan(Stores.from_dsns(dsns), RULES_V1, t1, kept_facts=False))

        with psycopg.connect(dsns["cf_prod"]) as conn:  # the catalog changes: every decision is made again
            conn.execute("DELETE FROM product_config WHERE plan = 'pro' AND feature = 'api_access'")
        fleet.recompute("ingest", "--source", "cf_prod")
        t2 = max(e.source_time for e in catalog_events(Stores.from_dsns(dsns)))  # the deletion, observed at its read
        never_ending = {a for a, d in decisions(dsns).items() if d[1] is None}
        assert never_ending and fold_catalog(catalog_events(Stores.from_dsns(dsns)), as_of=t2) != fold_catalog(
            catalog_events(Stores.from_dsns(dsns)), as_of=t1), "the catalog at t2 is not the one at t1"
        assert corrections(plan(Stores.from_dsns(dsns), RULES_V1, t2)) == corrections(plan(Stores.from_dsns(dsns), RULES_V1, t2, kept_facts=False))
        assert {d[0] for d in decisions(dsns).values()} == {t2}, "every decision is made again, the unending too"
        t1 = t2

        stricter = RULES_V1.model_copy(update={"version": "v9", "bad_debt_days_overdue": 5})
        assert stricter.digest != RULES_V1.digest
        assert corrections(plan(Stores.from_dsns(dsns), stricter, t1)) == corrections(plan(Stores.from_dsns(dsns), stricter, t1, kept_facts=False))
        assert {d[2].split("/")[0] for d in decisions(dsns).values()} == {stricter.digest}
        assert corrections(plan(Stores.from_dsns(dsns), RULES_V1, t1)) == corrections(plan(Stores.from_dsns(dsns), RULES_V1, t1, kept_facts=False))

        moved = sorted(decided)[::10]
        with psycopg.connect(dsns["billing_prod"]) as conn:
            conn.execute("UPDATE invoices SET status = 'void', updated_at = %s WHERE account_id = ANY(%s) "
                         "AND invoice_id IN (SELECT max(invoice_id) FROM invoices GROUP BY account_id)",
                         (t1 - timedelta(hours=1), moved))
        fleet.recompute("ingest", "--source", "billing_prod")
        assert corrections(plan(Stores.from_dsns(dsns), RULES_V1, t1)) == corrections(plan(Stores.from_dsns(dsns), RULES_V1, t1, kept_facts=False))
        assert corrections(plan(Stores.from_dsns(dsns), RULES_V1, t1)) == corrections(plan(Stores.from_dsns(dsns), RULES_V1, t1, kept_facts=False))


def test_kept_facts_from_before_the_decisions_are_read_and_nothing_is_kept_until_the_table_is_migrated(tmp_path):
    with a_fleet(tmp_path, accounts=60, drifting=10) as fleet:
        dsns = fleet.dsns
        expected = corrections(plan(Stores.from_dsns(dsns), RULES_V1, FLEET_NOW, kept_facts=False))
        plan(Stores.from_dsns(dsns), RULES_V1, FLEET_NOW)
        with psycopg.connect(dsns["eventstore"]) as conn:  # the table as the kept facts made it
            conn.execute("ALTER TABLE read_model_facts DROP COLUMN decided_state, DROP COLUMN decided_as_of, "
                         "DROP COLUMN decided_until, DROP COLUMN decided_rules_digest, DROP COLUMN decided_catalog_digest")
        before = kept_rows(dsns)
        again = plan(Stores.from_dsns(dsns), RULES_V1, FLEET_NOW)
        assert corrections(again) == expected and kept_rows(dsns) == before
        with psycopg.connect(dsns["eventstore"]) as conn:
            ensure_read_model(conn)
        assert corrections(plan(Stores.from_dsns(dsns), RULES_V1, FLEET_NOW)) == expected and len(decisions(dsns)) == len(before)
        assert corrections(plan(Stores.from_dsns(dsns), RULES_V1, FLEET_NOW)) == expected


def test_a_kept_result_stands_only_while_the_accounts_rows_and_parked_rows_are_those_it_was_found_for(tmp_path):
    """Beside a kept decision, plan keeps what the diff found against the account's live rows (and
    a digest of them, made by each store): a row changed, deleted or inserted after that plan, or
    a row parked since, is found by the next plan though the log did not move."""
    with a_fleet(tmp_path, accounts=120, drifting=20) as fleet:
        dsns = fleet.dsns

        def as_full_replay():
            kept = plan(Stores.from_dsns(dsns), RULES_V1, FLEET_NOW)
            assert corrections(kept) == corrections(plan(Stores.from_dsns(dsns), RULES_V1, FLEET_NOW, kept_facts=False))
            return kept

        plan(Stores.from_dsns(dsns), RULES_V1, FLEET_NOW)  # folds, decides, keeps the decisions and what they found
        steady = as_full_replay()
        assert steady.accounts_known > 0.9 * steady.accounts_read, "the kept results stand"
        agreeing = sorted(set(kept_rows(dsns)) - {c.account_id for c in steady.corrections}
                          - {h.account_id for h in steady.held})
        changed, deleted, inserted, parked = agreeing[1], agreeing[5], agreeing[9], agreeing[13]
        with psycopg.connect(dsns["cf_prod"]) as conn:  # none of it ingested: no stream moves
            conn.execute("UPDATE accounts SET status = CASE status WHEN 'active' THEN 'suspended' ELSE 'active' END "
                         "WHERE account_id = %s", (changed,))
            conn.execute("DELETE FROM entitlements WHERE account_id = %s AND enabled AND source = 'plan'", (deleted,))
            conn.execute("INSERT INTO entitlements VALUES (%s, 'no_such_feature', true, 'plan', now())", (inserted,))
        after = as_full_replay()
        assert {changed, deleted, inserted} <= {c.account_id for c in after.corrections}
        assert after.accounts_known == steady.accounts_known - 3, "only the three accounts' rows were read"
        assert as_full_replay().accounts_known == steady.accounts_known, "their results are kept anew"

        with psycopg.connect(dsns["cf_prod"]) as conn:  # a row parked, then put back as it was: same rows
            (feature,) = conn.execute("SELECT feature FROM entitlements WHERE account_id = %s AND source = 'plan' "
                                      "ORDER BY feature LIMIT 1", (parked,)).fetchone()
            conn.execute("UPDATE entitlements SET source = 'vip' WHERE account_id = %s AND feature = %s",
                         (parked, feature))
            conn.commit()
            fleet.recompute("ingest", "--source", "cf_prod")
            conn.execute("UPDATE entitlements SET source = 'plan' WHERE account_id = %s AND feature = %s",
                         (parked, feature))
        held = as_full_replay()
        assert parked in {h.account_id for h in held.held}


class Workers:
    """An executor that is not this process (as the Dask one): records the ranges it is given, runs them here."""

    def __init__(self) -> None:
        self.given: list[list[AccountRange]] = []

    def map(self, fn, items):
        self.given.append(list(items))
        return InlineExecutor().map(fn, items)


def test_a_plan_with_few_streams_to_fold_runs_here_in_one_range_and_gives_the_workers_nothing(tmp_path, monkeypatch):
    """Starting workers costs more than folding a few streams: plan first plans the fleet here, in
    one range, and gives it to its workers only when the reader finds INLINE_BELOW streams or more
    without kept facts standing (kept.ManyToFold, raised before anything is evaluated or kept)."""
    monkeypatch.setattr("projections.plan.INLINE_BELOW", 20)
    with a_fleet(tmp_path, accounts=120, drifting=20) as fleet:
        stores = Stores.from_dsns(fleet.dsns)
        workers = Workers()
        with monkeypatch.context() as reads:  # the workers' ranges split the streams read here already
            reads.setattr("projections.plan.account_ranges", lambda *_: pytest.fail("the streams are read again"))
            first = plan(stores, RULES_V1, FLEET_NOW, workers=2, executor=workers)
        assert [len(ranges) for ranges in workers.given] == [2], "everything to fold: on the workers"
        assert corrections(first) == corrections(plan(stores, RULES_V1, FLEET_NOW, kept_facts=False))

        workers = Workers()
        again = plan(stores, RULES_V1, FLEET_NOW, workers=2, executor=workers)
        assert workers.given == [] and corrections(again) == corrections(first)
        assert again.accounts_known > 0.9 * again.accounts_read

        before = heads(fleet.dsns)
        with psycopg.connect(fleet.dsns["billing_prod"]) as conn:
            conn.execute("UPDATE invoices SET status = 'void', updated_at = %s WHERE account_id = ANY(%s)",
                         (FLEET_NOW - timedelta(hours=1), sorted(kept_rows(fleet.dsns))[::3]))
        fleet.recompute("ingest", "--source", "billing_prod")
        assert len({a for a, head in heads(fleet.dsns).items() if head != before[a]}) >= 20
        after = plan(stores, RULES_V1, FLEET_NOW, workers=2, executor=workers)
        assert [len(ranges) for ranges in workers.given] == [2], "20 streams moved: on the workers"
        assert corrections(after) == corrections(plan(stores, RULES_V1, FLEET_NOW, kept_facts=False))


def test_kept_facts_and_decisions_are_compressed_with_lz4_where_the_server_has_it(stores):
    with psycopg.connect(stores["eventstore"]) as conn:
        ensure_read_model(conn)
        has_lz4 = conn.execute("SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
                               "WHERE name = 'default_toast_compression'").fetchone()[0]
    large = orjson.dumps([{"invoice": i, "status": "open", "amount": 1000 + i} for i in range(300)])  # ~10 KB
    decision = Decision(large, FLEET_NOW, None, DecisionKey("rules", "catalog"))
    with Stores.from_dsns(stores).connect() as conn:
        keep(conn, [Keep("acct_1", 3, FLEET_NOW, large, decision)])

    with psycopg.connect(stores["eventstore"]) as conn:
        compressed = conn.execute("SELECT pg_column_compression(facts), pg_column_compression(decided_state) "
                                  "FROM read_model_facts").fetchall()
    assert compressed == [("lz4", "lz4") if has_lz4 else ("pglz", "pglz")]
