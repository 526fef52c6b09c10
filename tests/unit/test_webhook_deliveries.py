"""What a webhook body must be before it is recorded (pure: no server, no database)."""

from __future__ import annotations

import orjson
import pytest

from ingestion.stripe.webhooks import DeliveryRefused, check_delivery
from tests.support.serve import SECRET, signed


def test_a_signed_event_object_is_taken_as_it_is():
    body = orjson.dumps({"id": "evt_1", "object": "event", "type": "customer.created"})
    assert check_delivery(body, signed(body), SECRET)["id"] == "evt_1"


@pytest.mark.parametrize(("body", "says"), [
    (b"[1,2,3]", "JSON list, not an event object"),
    (b'"x"', "JSON str, not an event object"),
    (b"null", "JSON NoneType, not an event object"),
    (b'{"object": "event"}', "no string 'id'"),
    (b'{"id": 42}', "no string 'id'"),
    (b"{not json", "body is not JSON"),
])
def test_a_signed_body_that_is_not_an_event_object_is_refused_saying_why(body, says):
    with pytest.raises(DeliveryRefused, match=says):
        check_delivery(body, signed(body), SECRET)


@pytest.mark.parametrize("signature", [None, "", "t=1,v1=00", "garbage"])
def test_a_body_without_a_valid_signature_is_refused_before_it_is_parsed(signature):
    with pytest.raises(DeliveryRefused, match="signature check failed"):
        check_delivery(b"[1,2,3]", signature, SECRET)


def test_a_body_that_is_not_utf8_is_refused_not_raised():
    body = b'{"id": "evt_\xff"}'
    with pytest.raises(DeliveryRefused):
        check_delivery(body, "t=1,v1=00", SECRET)
