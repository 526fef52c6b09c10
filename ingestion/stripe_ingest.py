"""Stripe into the account event log: list endpoints once, then the Events API from a cursor.

    first run    every current customer, subscription and invoice from the list endpoints
                 (objects older than the 30 days of events), then every event Stripe still holds
    later runs   events created at or after (cursor - lookback); the lookback catches events that
                 show up late, and the evt_ ids already recorded are skipped

Each batch commits its events with the evt_ ids it recorded (and the customer -> account map it
learned) in one transaction; the cursor moves only after the whole catch-up committed. A crash
therefore loses nothing, and a rerun re-reads from the old cursor and skips what it has.

An evt_ id seen again with a different body is parked as a conflict: the first body stays.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
import psycopg

from domain.events import StripeObjectObserved
from domain.trusted import trusted
from ingestion.report import IngestReport, TableReport
from ingestion.stripe_reader import StripeReader
from ingestion.stripe_translate import Observation, Rejection, translate_event, translate_listed
from recompute.bulk import bulk_insert
from recompute.eventlog import append_events
from recompute.ownschema import exclusive_ingest, park, save_checkpoint

SOURCE = "stripe"
LIST_ORDER = ("customer", "subscription", "invoice")  # customers first: they name the accounts


@dataclass
class _Batch:
    events: list[StripeObjectObserved] = field(default_factory=list)
    seen: list[tuple[str, bytes, datetime]] = field(default_factory=list)
    customers: dict[str, str] = field(default_factory=dict)
    parked: list[tuple[str, str, str, bytes, str]] = field(default_factory=list)  # table, key, reason, record, position


class StripeIngester:
    def __init__(
        self,
        *,
        reader: StripeReader | None,
        eventstore_dsn: str,
        batch_size: int = 5_000,
        lookback: timedelta = timedelta(hours=1),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._reader = reader
        self._dsn = eventstore_dsn
        self._batch_size = batch_size
        self._lookback = lookback
        self._clock = clock

    def run(self) -> IngestReport:
        assert self._reader is not None, "polling Stripe needs a reader"
        report = IngestReport(source=SOURCE)
        with psycopg.connect(self._dsn) as log, exclusive_ingest(log, SOURCE):
            checkpoint = _load_checkpoint(log)
            self._accounts = dict(log.execute("SELECT customer_id, account_id FROM stripe_customer_account"))
            log.commit()
            if not checkpoint.get("listed"):
                self._ingest_lists(log, report)
                checkpoint["listed"] = True
                _save_checkpoint(log, checkpoint)
            newest = self._ingest_events(log, report, checkpoint.get("created_gte"))
            if newest is not None:
                checkpoint["created_gte"] = max(newest, checkpoint.get("created_gte") or 0)
            _save_checkpoint(log, checkpoint)
        return report

    # -- list endpoints ------------------------------------------------------------------------

    def _ingest_lists(self, log: psycopg.Connection, report: IngestReport) -> None:
        """Every current object, once: each is recorded as `list:<id>` with its digest in the same
        transaction as its event, so a run killed mid-list relists and skips what it recorded."""
        read_at = self._clock()
        position = f"list@{read_at.isoformat()}"
        for object_type in LIST_ORDER:
            table = report.tables.setdefault(f"list:{object_type}", TableReport())
            page: list[dict] = []
            for obj in self._reader.listed(object_type):
                table.rows_read += 1
                page.append(obj)
                if len(page) >= self._batch_size:
                    table.appended += self._ingest_listed(log, page, table, position, read_at)
                    page = []
            table.appended += self._ingest_listed(log, page, table, position, read_at)

    def _ingest_listed(self, log, page: list[dict], table: TableReport, position: str, read_at: datetime) -> int:
        ids = {f"list:{obj.get('id')}": _digest(obj) for obj in page}
        known = _seen_digests(log, list(ids))
        batch = _Batch()
        for obj in page:
            list_id = f"list:{obj.get('id')}"
            if known.get(list_id) == ids[list_id]:
                continue
            batch.seen.append((list_id, ids[list_id], read_at))
            self._record(batch, translate_listed(obj, read_at=read_at), obj, position, table, via="list")
        return self._commit(log, batch)

    # -- events ---------------------------------------------------------------------------------

    def _ingest_events(self, log: psycopg.Connection, report: IngestReport, cursor: int | None) -> int | None:
        table = report.tables.setdefault("events", TableReport())
        since = None if cursor is None else cursor - int(self._lookback.total_seconds())
        newest: int | None = None
        pending: list[tuple[Observation, dict, str]] = []
        page: list[dict] = []
        for envelope in self._reader.events(created_gte=since):
            table.rows_read += 1
            created = envelope.get("created")
            if isinstance(created, int):
                newest = created if newest is None else max(newest, created)
            page.append(envelope)
            if len(page) >= self._batch_size:
                table.appended += self._ingest_page(log, page, table, pending, via="events_api")
                page = []
        table.appended += self._ingest_page(log, page, table, pending, via="events_api")
        table.appended += self._resolve_pending(log, pending, table)
        return newest

    def record_deliveries(self, envelopes: list[dict], *, via: str = "webhook",
                          log: psycopg.Connection | None = None) -> IngestReport:
        """Records events pushed to us (webhook deliveries): the same dedup, routing and parking as the Events API.

        On `log` when given (left open, e.g. a pool's connection), else on a connection of its own."""
        report = IngestReport(source=SOURCE)
        table = report.tables.setdefault(via, TableReport(rows_read=len(envelopes)))
        pending: list = []
        with nullcontext(log) if log is not None else psycopg.connect(self._dsn) as log:
            self._accounts = dict(log.execute("SELECT customer_id, account_id FROM stripe_customer_account"))
            log.commit()
            table.appended += self._ingest_page(log, envelopes, table, pending, via=via)
            table.appended += self._resolve_pending(log, pending, table)
        return report

    def _ingest_page(self, log, page: list[dict], table: TableReport, pending: list, *, via: str) -> int:
        if not page:
            return 0
        digests = {id(envelope): _digest(envelope) for envelope in page}
        ids = [e.get("id") for e in page if isinstance(e.get("id"), str)]
        known = _seen_digests(log, ids)
        batch = _Batch()
        page.sort(key=lambda e: (e.get("created") if isinstance(e.get("created"), int) else 0, str(e.get("id"))))
        for envelope in page:
            event_id, digest = envelope.get("id"), digests[id(envelope)]
            if isinstance(event_id, str) and event_id in known:
                if known[event_id] != digest:
                    table.parked += 1
                    batch.parked.append(("event", event_id, f"{event_id} was recorded before with a different "
                                         "body; the first one stands", orjson.dumps(envelope), event_id))
                    known[event_id] = digest  # park each conflicting body once per run
                continue
            observation = translate_event(envelope)
            if isinstance(event_id, str) and isinstance(envelope.get("created"), int):
                known[event_id] = digest
                batch.seen.append((event_id, digest, datetime.fromtimestamp(envelope["created"], UTC)))
            position = f"{event_id}"
            if isinstance(observation, Observation) and self._account_of(observation) is None:
                pending.append((observation, envelope, position, via))
                continue
            self._record(batch, observation, envelope, position, table, via=via)
        return self._commit(log, batch)

    def _resolve_pending(self, log, pending: list, table: TableReport) -> int:
        """Events whose customer was unknown while paging: ask Stripe for the customer, else park."""
        batch = _Batch()
        for observation, envelope, position, via in pending:
            if self._account_of(observation) is None and self._reader is not None:
                customer = self._reader.customer(observation.customer_id)
                account = ((customer or {}).get("metadata") or {}).get("account_id")
                if isinstance(account, str) and account:
                    batch.customers[observation.customer_id] = account
                    self._accounts[observation.customer_id] = account
            self._record(batch, observation, envelope, position, table, via=via)
        return self._commit(log, batch)

    # -- shared ---------------------------------------------------------------------------------

    def _account_of(self, observation: Observation) -> str | None:
        if observation.account_id:
            return observation.account_id
        return self._accounts.get(observation.customer_id or "")

    def _record(self, batch: _Batch, observation: Observation | Rejection, raw: dict, position: str,
                table: TableReport, *, via: str) -> None:
        if isinstance(observation, Rejection):
            table.parked += 1
            batch.parked.append(("event" if via != "list" else str(raw.get("object")), str(raw.get("id")),
                                 observation.reason, orjson.dumps(raw), position))
            return
        if observation.object_type == "customer" and observation.account_id:
            if self._accounts.get(observation.customer_id) != observation.account_id:
                batch.customers[observation.customer_id] = observation.account_id
            self._accounts[observation.customer_id] = observation.account_id
        account = self._account_of(observation)
        if account is None:
            table.parked += 1
            batch.parked.append((observation.object_type, str(observation.object.get("id")),
                                 f"belongs to no account: customer {observation.customer_id} has no "
                                 "metadata.account_id", orjson.dumps(raw), position))
            return
        batch.events.append(trusted(
            StripeObjectObserved,
            originator_id=account, originator_version=0, store="stripe", table=observation.object_type,
            key={"id": observation.object["id"]}, position=position, source_time=observation.source_time,
            recorded_at=self._clock(), object=observation.object, deleted=observation.deleted,
            event_id=observation.event_id, event_type=observation.event_type,
            event_created=observation.event_created, via=via,
        ))

    def _commit(self, log: psycopg.Connection, batch: _Batch) -> int:
        with log.transaction():
            appended = append_events(log, batch.events)
            with log.cursor() as cur:
                if batch.seen:
                    bulk_insert(cur, "stripe_event_seen", ("event_id", "digest", "created"), batch.seen)
                if batch.customers:
                    bulk_insert(cur, "stripe_customer_account", ("customer_id", "account_id"),
                                batch.customers.items(),
                                on_conflict="(customer_id) DO UPDATE SET account_id = EXCLUDED.account_id")
                if batch.parked:
                    park(cur, SOURCE, batch.parked)
        return appended


def _digest(envelope: dict) -> bytes:
    return hashlib.blake2b(orjson.dumps(envelope, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


def _load_checkpoint(log: psycopg.Connection) -> dict:
    row = log.execute("SELECT position FROM ingest_checkpoint WHERE source = %s", (SOURCE,)).fetchone()
    log.commit()
    return dict(row[0]) if row else {}


def _save_checkpoint(log: psycopg.Connection, checkpoint: dict) -> None:
    with log.transaction():
        save_checkpoint(log, SOURCE, checkpoint)


def _seen_digests(log: psycopg.Connection, ids: list[str]) -> dict[str, bytes]:
    """The body digests recorded for these evt_ (or list:) ids."""
    found = {event_id: bytes(digest) for event_id, digest in log.execute(
        "SELECT event_id, digest FROM stripe_event_seen WHERE event_id = ANY(%s)", (ids,))}
    log.commit()
    return found
