"""The log of the long-running commands: one line per change of state, in text or JSON (cli.md)."""

from __future__ import annotations

import io
import logging

import orjson
import pytest

from projections.follow.follower import spans
from projections.follow.health import Backoff, Health
from recompute.logs import JsonLines, TextLines


@pytest.fixture
def captured():
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("recompute.test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, handler, out
    logger.removeHandler(handler)


def test_an_outage_is_one_line_when_it_starts_and_one_when_it_ends_whatever_the_retries(captured):
    logger, handler, out = captured
    handler.setFormatter(TextLines())
    broker = Health(logger, "the broker", source="broker")
    for _ in range(5):
        broker.down("Connection refused")
    broker.up("3 events published")
    broker.up()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "WARNING recompute.test: the broker is gone: Connection refused; retrying [source=broker]" in lines[0]
    assert "INFO recompute.test: the broker is back after" in lines[1] and "(3 events published)" in lines[1]


def test_json_lines_carry_what_the_line_concerns_as_fields(captured):
    logger, handler, out = captured
    handler.setFormatter(JsonLines())
    logger.warning("the %s change stream is broken:\n slot gone", "subs", extra={"store": "subs"})
    line = orjson.loads(out.getvalue())
    assert line["level"] == "WARNING" and line["logger"] == "recompute.test" and line["store"] == "subs"
    assert line["message"] == "the subs change stream is broken: slot gone" and line["at"].endswith("Z")


def test_partitions_are_said_as_runs():
    assert spans([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8" and spans([]) == ""


def test_backoff_grows_to_its_cap_with_jitter_and_starts_over_after_a_success():
    backoff = Backoff(first=0.2, cap=1.0)
    waits = [backoff.next() for _ in range(8)]
    assert all(0 <= w <= 1.0 for w in waits) and max(waits[:1]) <= 0.2
    backoff.reset()
    assert backoff.next() <= 0.2
