"""Events survive the stored-state round trip, whether rebuilt fast or validated."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from eventsourcing.utils import get_topic
from hypothesis import given
from hypothesis import strategies as st

from domain.events import LegacyRowObserved, StripeObjectObserved
from eventlog.account_log import decode_event, encode_event

T = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def test_a_legacy_row_event_round_trips():
    event = LegacyRowObserved(originator_id="acc_1", originator_version=7, store="billing_prod", table="invoices",
                              key={"invoice_id": "inv_1"}, row={"status": "open", "amount_due": 2900},
                              position="billing_prod@1:1:", source_time=T, recorded_at=T)
    assert decode_event(get_topic(LegacyRowObserved), encode_event(event), "acc_1", 7) == event


def test_a_stripe_event_round_trips_with_its_times_as_datetimes():
    event = StripeObjectObserved(originator_id="acc_1", originator_version=2, table="invoice", key={"id": "in_1"},
                                 object={"id": "in_1", "status": "paid"}, event_id="evt_1", event_type="invoice.paid",
                                 event_created=T, via="events_api", position="evt_1", source_time=T, recorded_at=T)
    decoded = decode_event(get_topic(StripeObjectObserved), encode_event(event), "acc_1", 2)
    assert decoded == event and isinstance(decoded.event_created, datetime)


def test_a_stored_state_of_another_shape_is_validated_not_trusted():
    state = orjson.loads(encode_event(LegacyRowObserved(
        originator_id="a", originator_version=1, store="subs", table="subs_account", key={"account_id": "a"},
        row=None, position="p", source_time=T, recorded_at=T)))
    del state["position"]  # an older shape: validation must say so rather than build a broken event
    try:
        decode_event(get_topic(LegacyRowObserved), orjson.dumps(state), "a", 1)
    except ValueError as error:
        assert "position" in str(error)
    else:
        raise AssertionError("a state missing a field was accepted")


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20))
def test_a_json_value_read_from_the_database_is_what_the_standard_module_reads(value):
    import json

    from eventlog.stores import json_loads

    text = json.dumps(value)
    assert repr(json_loads(text.encode())) == repr(json.loads(text))
