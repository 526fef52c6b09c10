"""The stand-in's page arithmetic against a brute-force reading of Stripe's list semantics."""

from __future__ import annotations

import random

import orjson
import pytest

from simulation.stripe_standin import Collection, ListQuery

TYPES = ("invoice.paid", "invoice.updated", "charge.failed", "customer.updated")
STATUSES = ("active", "past_due", "canceled", "incomplete_expired")


def oracle(items: list[dict], q: ListQuery, keep) -> tuple[list[str], bool]:
    """Sort everything newest first, filter, cut at the cursor, take a page."""
    ordered = sorted((i for i in items if not i.get("deleted")), key=lambda i: (i["created"], i["id"]), reverse=True)
    low = q.low[0] if q.low else -(2**63)
    high = q.high[0] if q.high else 2**63
    position = {i["id"]: n for n, i in enumerate(ordered)}
    rows = [(n, i) for n, i in enumerate(ordered) if low <= i["created"] < high and keep(i)]
    if q.starting_after:
        after = [i["id"] for n, i in rows if n > position[q.starting_after]]
        return after[: q.limit], len(after) > q.limit
    if q.ending_before:
        before = [i["id"] for n, i in rows if n < position[q.ending_before]]
        return before[-q.limit:], len(before) > q.limit
    every = [i["id"] for _, i in rows]
    return every[: q.limit], len(every) > q.limit


def random_query(rng: random.Random, ids: list[str]) -> ListQuery:
    cursor = rng.choice([None, None, *ids])
    low = rng.choice([(), (rng.randrange(0, 50),)])
    high = rng.choice([None, (rng.randrange(0, 60),)])
    if rng.random() < 0.5:
        return ListQuery(limit=rng.randint(1, 8), starting_after=cursor, low=low, high=high)
    return ListQuery(limit=rng.randint(1, 8), ending_before=cursor, low=low, high=high)


def ids_of(blobs: list[bytes]) -> list[str]:
    return [orjson.loads(b)["id"] for b in blobs]


@pytest.mark.parametrize("seed", range(30))
def test_event_pages_match_the_brute_force_reading(seed):
    rng = random.Random(seed)
    events = [{"id": f"evt_{n:03d}", "type": rng.choice(TYPES), "created": rng.randrange(0, 50)}
              for n in range(rng.randint(0, 40))]
    collection = Collection("events")
    collection.load(events[: len(events) // 2], "test")
    for event in events[len(events) // 2:]:  # the rest arrive one by one, in no order
        collection.put(event)
    ids = [e["id"] for e in events]
    for _ in range(40):
        q = random_query(rng, ids)
        wanted = rng.choice([None, frozenset(rng.sample(TYPES, 2)), "invoice.*"])
        if wanted is None:
            keep = lambda e: True  # noqa: E731
        elif wanted == "invoice.*":
            q = ListQuery(**{**q.__dict__, "where": {"type": lambda t: t.startswith("invoice.")}})
            keep = lambda e: e["type"].startswith("invoice.")  # noqa: E731
        else:
            q = ListQuery(**{**q.__dict__, "where": {"type": wanted}})
            keep = lambda e, wanted=wanted: e["type"] in wanted  # noqa: E731
        blobs, has_more = collection.page(q)
        assert (ids_of(blobs), has_more) == oracle(events, q, keep), q


@pytest.mark.parametrize("seed", range(20))
def test_subscription_pages_survive_replacements_and_filter_on_two_fields(seed):
    rng = random.Random(seed)
    current: dict[str, dict] = {}
    collection = Collection("subscriptions")
    for _ in range(60):
        sid = f"sub_{rng.randrange(25):02d}"
        sub = {"id": sid, "customer": rng.choice(["cus_a", "cus_b", {"id": "cus_c"}]),
               "status": rng.choice(STATUSES), "created": rng.randrange(0, 50)}
        if rng.random() < 0.1:
            sub = {"id": sid, "deleted": True}
        current[sid] = sub
        collection.put(sub)
    listed = [s["id"] for s in current.values() if not s.get("deleted")]
    for _ in range(40):
        q = random_query(rng, listed or ["sub_none"])
        if not listed:
            q = ListQuery(limit=q.limit)
        customer = rng.choice([None, "cus_a", "cus_c"])
        where = {"status": lambda s: s != "canceled"}
        if customer:
            where["customer"] = frozenset({customer})
        q = ListQuery(**{**q.__dict__, "where": where})

        def keep(s, customer=customer):
            owner = s["customer"]["id"] if isinstance(s["customer"], dict) else s["customer"]
            return s["status"] != "canceled" and (customer is None or owner == customer)

        blobs, has_more = collection.page(q)
        assert (ids_of(blobs), has_more) == oracle(list(current.values()), q, keep), q
