"""The one ref format (domain/refs.py): an evt_ id, or store.table[key]@position with the key in the table's order."""

from __future__ import annotations

from freezegun import freeze_time

from domain.refs import key_text, ref_of, short_refs, shorten
from tests.support.builders import T0, legacy, now, stripe, stripe_invoice


@freeze_time(T0)
def test_a_stripe_event_is_named_by_its_evt_id():
    assert ref_of(stripe("invoice", stripe_invoice("in_1"), at=now(), evt="evt_1")) == "evt_1"


@freeze_time(T0)
def test_a_stripe_list_read_is_named_by_object_and_read_like_a_row():
    listed = stripe("invoice", stripe_invoice("in_1"), at=now()).model_copy(update={"position": f"list@{T0.isoformat()}"})
    assert ref_of(listed) == "stripe.invoice[in_1]@list@2026-03-01T00:00:00+00:00"


@freeze_time(T0)
def test_a_legacy_row_is_named_by_store_table_key_and_position():
    row = legacy("cf_prod", "accounts", {"account_id": "acc_1"}, {"account_id": "acc_1"}, at=now())
    assert ref_of(row) == f"cf_prod.accounts[acc_1]@{row.position}"


@freeze_time(T0)
def test_a_key_of_several_columns_reads_in_the_tables_key_order_not_the_alphabets():
    row = legacy("billing_prod", "schedules", {"invoice_id": "inv_1", "attempt": 2}, {}, at=now())
    assert ref_of(row) == f"billing_prod.schedules[inv_1/2]@{row.position}"
    assert key_text({"invoice_id": "inv_1", "attempt": 2}) == "inv_1/2"


@freeze_time(T0)
def test_two_observations_of_one_row_are_two_refs_and_a_deletion_is_one_too():
    first = legacy("billing_prod", "invoices", {"invoice_id": "inv_1"}, {"status": "open"}, at=now())
    second = legacy("billing_prod", "invoices", {"invoice_id": "inv_1"}, {"status": "paid"}, at=now())
    gone = legacy("billing_prod", "invoices", {"invoice_id": "inv_1"}, None, at=now())
    assert len({ref_of(first), ref_of(second), ref_of(gone)}) == 3


@freeze_time(T0)
def test_a_stripe_event_and_a_list_read_of_one_object_are_two_refs():
    obj = stripe_invoice("in_1")
    assert ref_of(stripe("invoice", obj, at=now(), evt="evt_1")) != ref_of(stripe("invoice", obj, at=now()))


def test_short_refs_number_each_rows_observations_in_timeline_order_and_keep_evt_ids():
    refs = ["cf_prod.accounts[acc_1]@cf_prod@765:765:", "evt_1", "billing_prod.dunning[acc_1]@billing_prod@765:765:",
            "billing_prod.dunning[acc_1]@billing_prod@901:901:", "stripe.invoice[in_1]@list@2026-03-01T00:00:00+00:00",
            "billing_prod.schedules[inv_1/2]@billing_prod@765:765:"]
    assert list(short_refs(refs).values()) == ["accounts[acc_1]#1", "evt_1", "dunning[acc_1]#1", "dunning[acc_1]#2",
                                               "stripe.invoice[in_1]#1", "schedules[inv_1/2]#1"]


def test_a_ref_outside_the_timeline_is_shown_as_it_is():
    short = short_refs(["cf_prod.accounts[acc_1]@cf_prod@765:765:"])
    assert shorten("cf_prod.accounts[acc_1]@cf_prod@900:900:", short) == "cf_prod.accounts[acc_1]@cf_prod@900:900:"
    assert shorten("cf_prod.accounts[acc_1]@cf_prod@765:765:", short) == "accounts[acc_1]#1"
