"""A Stripe world written a part at a time reads back as the world saved at once, events sorted."""

import orjson

from simulation.stripe_world import StripeWorld, StripeWorldWriter


def event(created: int, eid: str) -> dict:
    return {"id": eid, "object": "event", "created": created, "type": "invoice.paid", "data": {"object": {}}}


def test_parts_merge_into_events_sorted_by_created_then_id(tmp_path):
    parts = [[event(30, "evt_b"), event(10, "evt_z")], [event(30, "evt_a"), event(20, "evt_c")],
             [event(30, "evt_ab"), event(5, "evt_y")]]
    with StripeWorldWriter(tmp_path, now=99) as writer:
        for part in parts:
            writer.add(events=part, customers=[], subscriptions=[], invoices=[])
    everything = [e for part in parts for e in part]
    expected = sorted(everything, key=lambda e: (e["created"], e["id"]))
    lines = (tmp_path / "events.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == expected
    assert writer.counts["events"] == len(everything)


def test_objects_are_appended_in_the_order_given_and_no_run_file_is_left(tmp_path):
    customers = [{"id": f"cus_{n}", "object": "customer"} for n in range(5)]
    with StripeWorldWriter(tmp_path, now=99) as writer:
        writer.add(events=[], customers=customers[:2], subscriptions=[], invoices=[{"id": "in_1"}])
        writer.add(events=[event(1, "evt_1")], customers=customers[2:], subscriptions=[{"id": "sub_1"}],
                   invoices=[])
    world = StripeWorld.load(tmp_path)
    assert (world.now, world.customers, world.subscriptions, world.invoices) == \
        (99, customers, [{"id": "sub_1"}], [{"id": "in_1"}])
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        ["customers.jsonl", "events.jsonl", "invoices.jsonl", "meta.json", "subscriptions.jsonl"]
