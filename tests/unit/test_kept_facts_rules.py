"""What may be kept of a fold and when kept facts stand for one (projections/evaluation/kept_facts.py, pure parts)."""

from __future__ import annotations

from freezegun import freeze_time

from domain.facts import AccountFacts
from domain.fold import FOLD_VERSION, fold
from projections.evaluation.kept_facts import Kept, decode, encode, keepable, usable
from tests.support.builders import ACCOUNT, DAY, SECOND, T0, an_account, legacy, now, past_due, stripe, stripe_invoice


def subs_row_seen(at):
    """An observed-only row (subs_account), as ingest times it: at the snapshot read."""
    return legacy("subs", "subs_account", {"account_id": ACCOUNT},
                  {"account_id": ACCOUNT, "bad_debt": False, "delinquent": True}, at=at)


@freeze_time(T0)
def test_the_fold_plan_runs_reads_what_the_truth_reads_and_no_observed_rows():
    events = [*an_account(invoice=past_due(days=20, attempts=2)), subs_row_seen(now() - DAY),
              stripe("charge", {"id": "ch_1", "status": "failed"}, at=now() - DAY, evt="evt_charge")]
    whole, lean = fold(events, as_of=now()), fold(events, as_of=now(), legacy=False)

    assert lean.legacy == {} and whole.legacy
    assert lean.model_copy(update={"legacy": whole.legacy, "events_folded": whole.events_folded}) == whole
    assert lean.events_folded == whole.events_folded - 2


@freeze_time(T0)
def test_facts_are_kept_when_every_truth_event_is_at_or_before_t_whatever_the_observed_rows_say():
    events = [*an_account(invoice=past_due(days=20, attempts=2)), subs_row_seen(now() + 30 * DAY)]
    latest = max(e.source_time for e in events[:-1])

    assert keepable(events, now()) == (max(e.originator_version for e in events), latest)
    assert keepable(events, latest - SECOND) is None, "a truth event after T: the facts miss it"
    assert keepable([subs_row_seen(now())], now()) is None, "no truth event: nothing worth keeping"


@freeze_time(T0)
def test_kept_facts_stand_for_a_fold_at_a_later_t_only_while_the_stream_and_the_fold_version_stay():
    kept = Kept(ACCOUNT, stream_version=12, latest_source_time=now(), fold_version=FOLD_VERSION)

    assert usable(kept, 12, now()) and usable(kept, 12, now() + 300 * DAY)
    assert not usable(kept, 12, now() - SECOND), "an earlier T replays"
    assert not usable(kept, 13, now()), "the stream moved"
    assert not usable(Kept(ACCOUNT, 12, now(), FOLD_VERSION + "-old"), 12, now()), "another fold version"
    assert not usable(None, 12, now())


@freeze_time(T0)
def test_decoded_facts_equal_a_fold_at_the_later_t():
    events = an_account(invoice=past_due(days=3, stripe_status="open"))
    events.append(stripe("invoice", stripe_invoice("in_x", "open", attempts=1), at=now() - DAY, evt="evt_x"))
    later = now() + 40 * DAY

    assert decode(encode(fold(events, as_of=now(), legacy=False)), later) == fold(events, as_of=later, legacy=False)


def test_every_field_of_the_facts_is_decoded_as_validation_would_make_it():
    """Decoding gives the facts the fold made, to their JSON (datetimes, tuples, nested models)."""
    with freeze_time(T0):
        events = an_account(invoice=past_due(days=30, attempts=3), manual=("sso",))
        events.append(stripe("invoice", stripe_invoice("in_y", "open", attempts=2), at=now() - DAY, evt="evt_y"))
        facts = fold(events, as_of=now(), legacy=False)
    data = encode(facts)
    decoded = decode(data, facts.as_of)
    assert decoded == AccountFacts.model_validate_json(data) == facts
    assert decoded.model_dump() == facts.model_dump() and decoded.model_dump_json() == facts.model_dump_json()
    assert facts.dunning_history and facts.invoices and facts.manual_entitlements


def test_a_kept_result_decodes_to_what_the_diff_and_the_hold_found():
    from datetime import UTC, datetime

    from domain.diff import Correction
    from domain.held import HeldRow
    from projections.evaluation.kept_facts import Known, decode_result, encode_result

    corrections = [
        Correction(account_id=ACCOUNT, table="cf_prod.accounts", op="update", key={"account_id": ACCOUNT},
                   column="status", from_="suspended", to="active"),
        Correction(account_id=ACCOUNT, table="subs.subs_dunning", op="insert", key={"account_id": ACCOUNT},
                   column=None, from_=None, to={"stage": "grace", "attempt_count": 2,
                                               "next_action_at": "2026-03-04T00:00:00+00:00", "ratio": 1.0}),
        Correction(account_id=ACCOUNT, table="subs.subs_customer", op="delete", key={"id": 7}, column=None,
                   from_={"id": 7, "stripe_customer_id": "cus_x", "created_at": "2025-01-01T00:00:00+00:00"}, to=None),
    ]
    held = [HeldRow(account_id=ACCOUNT, table="cf_prod.entitlements", key={"account_id": ACCOUNT, "feature": "sso"},
                    reason="source 'vip'", parked_at=datetime(2026, 2, 1, 12, 30, tzinfo=UTC)),
            HeldRow(account_id=ACCOUNT, table="cf_prod.entitlements", key={"account_id": ACCOUNT, "feature": "api"},
                    reason="plan 'x' is not in product_config", parked_at=None)]

    for known in (Known(True, corrections, held), Known(False, [], []), Known(True, [], [])):
        assert decode_result(encode_result(known)) == known


def test_the_digests_of_the_rows_are_one_column_and_back():
    from projections.evaluation.kept_facts import decode_rows_digests, encode_rows_digests, parked_digest

    for rows in ((None, None, None), (b"\x00" * 32, None, b"\x01" * 32), (bytes(range(32)),) * 3, ()):
        assert decode_rows_digests(encode_rows_digests(rows)) == rows
    assert parked_digest([]) is None
