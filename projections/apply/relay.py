"""The relay: publishes the outbox's ready events to the broker, then marks them sent.

    relay(eventstore_dsn, broker_url) -> RelayReport

kombu, to a durable topic exchange `recompute.events`, routing key = event type, persistent
messages (delivery_mode=2), publisher confirms (py-amqp `confirm_publish`): a message counts as
sent only once the broker has confirmed it. Events are taken in outbox order with
`FOR UPDATE SKIP LOCKED` (two relays never publish the same event at once) and marked sent in the
transaction that took them. A crash between the broker's confirm and that commit publishes the
event again later, under the same message_id (the event id): delivery is at least once, and the
id is the consumers' idempotency key.

Errors: the broker unreachable or refusing (kombu `OperationalError`, the transport's connection
and channel errors, `MessageNacked`, a socket timeout) stop the relay; what was confirmed is marked
sent, the rest waits, and the report says why. kombu's own `retry_policy` retries a lost connection
a couple of times first. Database errors propagate.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from amqp.exceptions import AccessRefused, MessageNacked, NotAllowed
from kombu import Connection, Exchange
from kombu.exceptions import OperationalError

EXCHANGE = Exchange("recompute.events", type="topic", durable=True)
RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
BATCH = 500


class BrokerRefused(Exception):
    """The broker answered and refused us (credentials, vhost, permissions): a configuration error,
    unlike a broker that cannot be reached, which only makes events wait."""


def check_broker(broker_url: str) -> str | None:
    """Connects once: None when the broker takes us, the reason when it cannot be reached; raises
    BrokerRefused (its message shows the URL with the password masked) when it refuses us."""
    broker = Connection(broker_url, connect_timeout=5)
    try:
        broker.ensure_connection(max_retries=0)
    except (AccessRefused, NotAllowed) as refusal:
        raise BrokerRefused(f"the broker at {broker.as_uri()} refused us: {refusal.reply_text}") from None
    except (OperationalError, OSError, *broker.connection_errors) as failure:
        return _say(failure)
    finally:
        broker.release()
    return None


@dataclass(frozen=True)
class RelayReport:
    published: int
    waiting: int
    error: str | None = None


def relay(eventstore_dsn: str, broker_url: str, *, batch: int = BATCH) -> RelayReport:
    published, error = 0, None
    with psycopg.connect(eventstore_dsn, autocommit=True) as conn:  # each batch its own transaction
        if _waiting(conn) == 0:
            return RelayReport(0, 0)
        broker = Connection(broker_url, connect_timeout=5, transport_options={"confirm_publish": True})
        failures = (OperationalError, MessageNacked, OSError, *broker.connection_errors, *broker.channel_errors)
        try:
            broker.ensure_connection(**RETRY_POLICY)
            producer = broker.Producer()
            while error is None:
                with conn.transaction():
                    rows = conn.execute(
                        "SELECT event_id, type, body::text FROM outbox_event WHERE status = 'ready' "
                        "ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED", (batch,)).fetchall()
                    if not rows:
                        break
                    sent = []
                    for event_id, event_type, body in rows:
                        try:
                            _publish(producer, str(event_id), event_type, body)
                        except failures as failure:
                            error = _say(failure)
                            break
                        sent.append(event_id)
                    conn.execute("UPDATE outbox_event SET status = 'sent', sent_at = now(), attempts = attempts + 1 "
                                 "WHERE event_id = ANY(%s)", (sent,))
                    published += len(sent)
        except failures as failure:
            error = _say(failure)
        finally:
            broker.release()
        return RelayReport(published, _waiting(conn), error)


def _publish(producer, event_id: str, event_type: str, body: str) -> None:
    producer.publish(
        body.encode(), exchange=EXCHANGE, routing_key=event_type, declare=[EXCHANGE],
        content_type="application/json", content_encoding="utf-8", delivery_mode=2,
        message_id=event_id, type=event_type, headers={"idempotency_key": event_id},
        retry=True, retry_policy=RETRY_POLICY, confirm_timeout=10,
    )


def waiting_events(eventstore_dsn: str) -> int:
    """How many domain events wait in the outbox to be published."""
    with psycopg.connect(eventstore_dsn) as conn:
        return _waiting(conn)


def _waiting(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM outbox_event WHERE status = 'ready'").fetchone()[0]


def _say(failure: BaseException) -> str:
    return f"{type(failure).__name__}: {' '.join(str(failure).split()) or 'no detail'}"
