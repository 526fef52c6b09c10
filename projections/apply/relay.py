"""The relay: publishes the outbox's ready events to the broker, then marks them sent.

    relay(stores=..., broker_url=...) -> RelayReport

kombu, to a durable topic exchange `recompute.events`, routing key = event type, persistent
messages (delivery_mode=2), publisher confirms (RabbitMQ's confirm.select on the channel): a
message counts as sent only once the broker has confirmed it; a batch is published back to back and
its confirms awaited once (`_Confirms`), not one round trip per message. Events are taken in outbox order with
`FOR UPDATE SKIP LOCKED` (two relays never publish the same event at once) and marked sent in the
transaction that took them. A crash between the broker's confirm and that commit publishes the
event again later, under the same message_id (the event id): delivery is at least once, and the
id is the consumers' idempotency key.

Errors: the broker unreachable or refusing (kombu `OperationalError`, the transport's connection
and channel errors, `MessageNacked`, a socket timeout) stop the relay; what was confirmed is marked
sent, the rest waits (for the next relay), and the report says why. kombu's `retry_policy` retries
the first connection a couple of times. Database errors propagate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from amqp.exceptions import AccessRefused, MessageNacked, NotAllowed
from kombu import Connection, Exchange, Producer
from kombu.exceptions import OperationalError

from eventlog.stores import Connection as Session  # kombu's Connection is the broker's
from eventlog.stores import Stores

EXCHANGE = Exchange("recompute.events", type="topic", durable=True)
RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
BATCH = 500
CONFIRM_TIMEOUT_S = 10.0


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


def relay(*, stores: Stores, broker_url: str, batch: int = BATCH) -> RelayReport:
    published, error = 0, None
    with stores.connect(purpose="relay", autocommit=True) as conn:  # each batch its own transaction
        if _waiting(conn) == 0:
            return RelayReport(0, 0)
        broker = Connection(broker_url, connect_timeout=5)
        failures = (OperationalError, MessageNacked, OSError, *broker.connection_errors, *broker.channel_errors)
        try:
            broker.ensure_connection(**RETRY_POLICY)
            producer = broker.Producer()
            confirms = _Confirms(broker)
            while error is None:
                with conn.transaction():
                    rows = conn.execute(
                        "SELECT event_id, type, body::text FROM outbox_event WHERE status = 'ready' "
                        "ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED", (batch,)).fetchall()
                    if not rows:
                        break
                    try:
                        for event_id, event_type, body in rows:  # the batch goes out, then its confirms come
                            _publish(producer, str(event_id), event_type, body)
                        confirms.wait(len(rows))
                        sent = [event_id for event_id, _, _ in rows]
                    except failures as failure:
                        error = _say(failure)
                        sent = [event_id for event_id, _, _ in rows[:confirms.through_batch()]]
                    conn.execute("UPDATE outbox_event SET status = 'sent', sent_at = clock_timestamp(), "
                                 "attempts = attempts + 1 WHERE event_id = ANY(%s)", (sent,))
                    published += len(sent)
        except failures as failure:
            error = _say(failure)
        finally:
            broker.release()
        return RelayReport(published, _waiting(conn), error)


class _Confirms:
    """Publisher confirms for a batch (RabbitMQ's confirm.select): its messages are published back
    to back and the broker's acks (delivery tags 1, 2, ... on the channel; `multiple` covers every
    tag up to it) awaited once, not a round trip per message. A nack, or acks missing after
    CONFIRM_TIMEOUT_S, fails the batch from its first message not acked on."""

    def __init__(self, broker: Connection) -> None:
        self._channel = broker.default_channel  # py-amqp's (amqp://); kombu's hint names its virtual one
        self._connection = broker.connection
        self._channel.confirm_select()  # type: ignore[attr-defined]  # py-amqp's
        self._base = 0  # the tags of earlier batches
        self._acked: set[int] = set()
        self._nacked = False
        self._channel.events["basic_ack"].add(self._on_ack)  # type: ignore[attr-defined]  # py-amqp's
        self._channel.events["basic_nack"].add(self._on_nack)  # type: ignore[attr-defined]  # py-amqp's

    def _on_ack(self, tag: int, multiple: bool) -> None:
        self._acked.update(range(self._base + 1, tag + 1) if multiple else (tag,))

    def _on_nack(self, tag: int, multiple: bool) -> None:
        self._nacked = True

    def through_batch(self) -> int:
        """How many messages of the current batch, from its first on, the broker acked."""
        n = 0
        while self._base + n + 1 in self._acked:
            n += 1
        return n

    def wait(self, count: int) -> None:
        deadline = time.monotonic() + CONFIRM_TIMEOUT_S
        while self.through_batch() < count and not self._nacked:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{count - self.through_batch()} of {count} publishes not confirmed "
                                   f"within {CONFIRM_TIMEOUT_S:g}s")
            try:
                self._connection.drain_events(timeout=left)
            except TimeoutError:
                continue
        if self._nacked:
            raise MessageNacked()
        self._base += count
        self._acked = {tag for tag in self._acked if tag > self._base}


def _publish(producer: Producer, event_id: str, event_type: str, body: str) -> None:
    producer.publish(
        body.encode(), exchange=EXCHANGE, routing_key=event_type, declare=[EXCHANGE],
        content_type="application/json", content_encoding="utf-8", delivery_mode=2,
        message_id=event_id, type=event_type, headers={"idempotency_key": event_id},
    )


def waiting_events(stores: Stores) -> int:
    """How many domain events wait in the outbox to be published."""
    with stores.connect(purpose="relay") as conn:
        return _waiting(conn)


def _waiting(conn: Session) -> int:
    return conn.execute("SELECT count(*) FROM outbox_event WHERE status = 'ready'").fetchone()[0]  # type: ignore[index,no-any-return]  # always one row


def _say(failure: BaseException) -> str:
    return f"{type(failure).__name__}: {' '.join(str(failure).split()) or 'no detail'}"
