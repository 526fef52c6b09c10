"""backfill's fast read (eventlog/range_reads.truth_events: only the events some rule may read are decoded)
against the full read (account_events) over a whole generated fleet: the same facts for every
account, at T and at an earlier instant (where some accounts have no truth event yet), the same
stream length and head version, and no truth event left undecoded."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.fold import fold, may_be_read_by_truth, read_by_truth
from eventlog.account_log import decode_event
from eventlog.account_range import AccountRange
from eventlog.range_reads import _event_rows, account_events, logged_accounts, truth_events
from eventlog.stores import Stores
from tests.support.fleet import FLEET_NOW

pytestmark = [pytest.mark.integration, pytest.mark.fleet(kind="served")]


def test_truth_events_fold_to_the_facts_of_the_whole_stream(fleet):
    es = Stores.from_dsns(fleet.dsns)
    accounts = AccountRange(ids=tuple(logged_accounts(es)))
    whole = dict(account_events(es, accounts))
    streams = list(truth_events(es, accounts))
    assert [s.account_id for s in streams] == list(whole)
    skipped = 0
    for stream in streams:
        events = whole[stream.account_id]
        assert (stream.count, stream.head) == (len(events), events[-1].originator_version)
        skipped += len(stream.others)
        for at in (FLEET_NOW, FLEET_NOW - timedelta(days=400)):
            assert fold(stream.for_fold(at), as_of=at, legacy=False) == fold(events, as_of=at, legacy=False)
    assert skipped > 0, "the fleet must hold events no rule reads, for this test to mean anything"


def test_no_event_a_rule_reads_is_judged_unread_on_its_stored_state(fleet):
    for originator_id, version, topic, state in _event_rows(Stores.from_dsns(fleet.dsns), AccountRange()):
        if read_by_truth(decode_event(topic, state, originator_id, version)):
            assert may_be_read_by_truth(state)
