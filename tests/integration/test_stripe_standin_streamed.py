"""The stand-in serving a world directory streamed (keys in memory, bodies from the mapped file)
answers every page and object exactly as the stand-in holding the world in memory."""

from __future__ import annotations

import urllib.request

import pytest

from simulation.stripe_standin import StripeStandIn
from tests.support.stripe_world import NOW, a_world, an_event, an_invoice

pytestmark = pytest.mark.integration
KEY = "sk_test_streamed"
PATHS = ["/v1/events?limit=3", "/v1/events?limit=100", "/v1/customers", "/v1/subscriptions?status=all",
         "/v1/invoices?limit=2", "/v1/invoices?status=open", "/v1/customers/cus_42", "/v1/invoices/in_42",
         "/v1/events/evt_old", "/v1/events/evt_inv_failed", "/v1/customers/cus_nope"]


def get(base: str, path: str) -> tuple[int, bytes]:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {KEY}"})
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_a_streamed_world_answers_as_the_world_in_memory(tmp_path):
    world = a_world()
    world.events.append(an_event("evt_old", "invoice.finalized", an_invoice(), NOW - 40 * 86_400))  # past retention
    world.save(tmp_path / "world")
    with StripeStandIn(world, api_key=KEY) as held, StripeStandIn(tmp_path / "world", api_key=KEY) as streamed:
        for path in PATHS:
            mine, theirs = get(streamed.base_url, path), get(held.base_url, path)
            assert mine == theirs, path
