"""The broker stopped for real (`rabbitmqctl stop_app`) while `apply` runs: the run succeeds, its
events wait in the outbox, and `recompute relay` publishes them, once each, when the broker is back."""

from __future__ import annotations

import socket
import subprocess
import time

import psycopg
import pytest

from simulation.harness.apply_fleet import NOW, a_consumer, drain

pytestmark = [pytest.mark.integration, pytest.mark.broker, pytest.mark.alone]


def broker(action: str) -> None:
    subprocess.run(["rabbitmqctl", action], check=True, capture_output=True, timeout=120)
    if action == "start_app":
        deadline = time.monotonic() + 60
        while not _listening():
            assert time.monotonic() < deadline, "RabbitMQ did not come back"
            time.sleep(0.2)


def _listening() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
        return True
    except OSError:
        return False


def outbox(eventstore: str) -> dict[str, tuple[str, str]]:
    with psycopg.connect(eventstore) as conn:
        rows = conn.execute("SELECT event_id::text, status, body::text FROM outbox_event").fetchall()
    return {event_id: (status, body) for event_id, status, body in rows}


def test_with_the_broker_down_apply_succeeds_events_wait_and_relay_publishes_them_when_it_is_back(fleet):
    eventstore = fleet.dsns["eventstore"]
    with a_consumer() as queue:
        broker("stop_app")
        try:
            applied = fleet.recompute("apply", "--force", "--as-of", NOW.isoformat())
            waiting = outbox(eventstore)
            refused = fleet.recompute("relay", expect=1)
        finally:
            broker("start_app")
        assert "waiting in the outbox" in applied.stdout and "broker unreachable" in applied.stdout
        assert waiting and {status for status, _ in waiting.values()} == {"ready"}
        assert f"{len(waiting)} events wait in the outbox" in refused.stderr

        published = fleet.recompute("relay")
        assert f"published {len(waiting)}, 0 waiting" in published.stdout
        received = drain(queue)
        assert sorted(m["id"] for m in received) == sorted(waiting)
        assert {status for status, _ in outbox(eventstore).values()} == {"sent"}

        # A relay that dies between the broker's confirm and marking them sent publishes them again: same ids, same bodies.
        again = sorted(waiting)[:3]
        with psycopg.connect(eventstore) as conn:
            conn.execute("UPDATE outbox_event SET status = 'ready' WHERE event_id = ANY(%s::uuid[])", (again,))
        fleet.recompute("relay")
        duplicates = drain(queue)
        assert sorted(m["id"] for m in duplicates) == again
        first = {m["id"]: m["body"] for m in received}
        assert all(m["body"] == first[m["id"]] for m in duplicates)
    assert fleet.recompute("relay").stdout.startswith("events: published 0, 0 waiting")
