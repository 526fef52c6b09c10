"""Stripe webhook deliveries: what a signed body must be (pure), and how deliveries are recorded.

`check_delivery` decides; `GroupCommit` records. A delivery's HTTP answer is sent only after the
transaction holding its event committed, so a 200 never stands for something a crash can lose.

    DeliveryRefused    the delivery is not one (bad signature, not JSON, not an event object): 400
    StoreDown          the event store cannot be reached: 503, Stripe retries
    any other error    recording failed: 500, Stripe retries

Why group commit rather than one transaction per delivery in a thread: every append takes the
event table's EXCLUSIVE lock and reads the customer map, so per-delivery transactions serialize on
the lock and pay that read each time. One writer thread takes every delivery queued while the
previous commit ran and records them in one `record_deliveries` call (measured by
scripts/load_webhooks.py; the README has the figures). A failed group is retried one delivery at a
time, so one bad delivery fails alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import anyio.to_thread
import orjson
import psycopg_pool
import stripe

from eventlog.stores import OperationalError

TOLERANCE_SECONDS = 300  # stripe's own default for WebhookSignature
MAX_GROUP = 500

log = logging.getLogger("recompute.serve")


class DeliveryRefused(Exception):
    """Not a delivery we can take; the message says why (the 400's reason)."""


class StoreDown(Exception):
    """The event store is unreachable; the message says why (the 503's reason)."""


def check_delivery(body: bytes, signature: str | None, secret: str) -> dict:
    """The event envelope of a correctly signed body, or DeliveryRefused saying what is wrong."""
    try:
        stripe.WebhookSignature.verify_header(body.decode("utf-8", "replace"), signature, secret,
                                              tolerance=TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError as error:
        raise DeliveryRefused(f"signature check failed: {error.user_message or error}") from None
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise DeliveryRefused(f"body is not JSON: {error}") from None
    if not isinstance(envelope, dict):
        raise DeliveryRefused(f"body is JSON {type(envelope).__name__}, not an event object")
    if not isinstance(envelope.get("id"), str) or not envelope["id"]:
        raise DeliveryRefused("event object has no string 'id'")
    return envelope


def store_down_reason(error: Exception) -> str | None:
    """Why the event store is unreachable, when `error` says so (else None: some other failure)."""
    if isinstance(error, (OperationalError, psycopg_pool.PoolTimeout)):
        return "event store unavailable: " + " ".join(str(error).split())
    return None


Record = Callable[[list[dict]], None]  # records envelopes in one transaction, or raises


@dataclass
class _Waiting:
    envelope: dict
    answer: asyncio.Future


class GroupCommit:
    """Deliveries queue here; a writer records every delivery queued on it, in one call, then
    answers each. `record` runs in a worker thread (it blocks on PostgreSQL). With several
    writers an evt_ id always goes to the same one, so two deliveries of one id never race here."""

    def __init__(self, record: Record, *, writers: int = 1) -> None:
        self._record = record
        self._queues: list[asyncio.Queue[_Waiting]] = [asyncio.Queue() for _ in range(writers)]
        self._writers: list[asyncio.Task] = []

    async def deliver(self, envelope: dict) -> None:
        """Returns once the envelope is committed; raises StoreDown or the recording error."""
        loop = asyncio.get_running_loop()
        if not self._writers:
            self._writers = [loop.create_task(self._write(queue)) for queue in self._queues]
        waiting = _Waiting(envelope, loop.create_future())
        self._queues[hash(envelope["id"]) % len(self._queues)].put_nowait(waiting)
        await waiting.answer

    async def close(self) -> None:
        for writer in self._writers:
            writer.cancel()

    async def _write(self, queue: asyncio.Queue[_Waiting]) -> None:
        while True:
            group = [await queue.get()]
            while not queue.empty() and len(group) < MAX_GROUP:
                group.append(queue.get_nowait())
            await self._commit(group)

    async def _commit(self, group: list[_Waiting]) -> None:
        try:
            await anyio.to_thread.run_sync(self._record, [w.envelope for w in group])
        except Exception as error:  # noqa: BLE001 - every delivery must be answered; the error is passed on
            if len(group) > 1 and store_down_reason(error) is None:
                for waiting in group:  # isolate the delivery that fails
                    await self._commit([waiting])
                return
            for waiting in group:
                _answer(waiting, error)
            return
        for waiting in group:
            _answer(waiting, None)


def _answer(waiting: _Waiting, error: Exception | None) -> None:
    if waiting.answer.done():  # the client went away
        return
    if error is None:
        waiting.answer.set_result(None)
        return
    reason = store_down_reason(error)
    if reason is None:
        log.error("could not record %s: %r", waiting.envelope.get("id"), error, extra={"source": "stripe"})
    waiting.answer.set_exception(StoreDown(reason) if reason else error)


class ThreadPerDelivery:
    """The other design, kept for measuring against GroupCommit: each delivery records itself
    in a worker thread, in a transaction of its own."""

    def __init__(self, record: Record) -> None:
        self._record = record

    async def deliver(self, envelope: dict) -> None:
        try:
            await anyio.to_thread.run_sync(self._record, [envelope])
        except Exception as error:  # noqa: BLE001 - passed on as GroupCommit does
            reason = store_down_reason(error)
            if reason is None:
                log.error("could not record %s: %r", envelope.get("id"), error, extra={"source": "stripe"})
                raise
            raise StoreDown(reason) from None

    async def close(self) -> None:
        pass


def pooled_recorder(pool: psycopg_pool.ConnectionPool, record_deliveries, *, timeout: float = 5.0) -> Record:
    """`record_deliveries(envelopes, log=conn)` on a connection of the pool."""
    def record(envelopes: list[dict]) -> None:
        with pool.connection(timeout=timeout) as conn, conn.pipeline():
            record_deliveries(envelopes, log=conn)
    return record
