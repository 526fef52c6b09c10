"""Stripe into the account event log: list endpoints once, then the Events API from a cursor.

    first run    every current customer, subscription and invoice from the list endpoints
                 (objects older than the 30 days of events), then every event Stripe still holds
    later runs   events created at or after (cursor - lookback); the lookback catches events that
                 show up late, and the evt_ ids already recorded are skipped

One transaction per batch (a page of the catch-up, or one call of `record_deliveries`) claims the
batch's evt_ ids (`stripe_event_seen`, a unique key: of racing deliveries of one id, one claims
it) and records what the claimed ones produced: their events, the customer -> account map they
taught, the records parked. The cursor moves only after the whole catch-up committed. A crash
therefore loses nothing, and a rerun re-reads from the old cursor and skips what it has.

An object whose customer names no account yet is parked *waiting* for that customer: it is
recorded in the transaction that learns the customer's account (a customer event of any later
batch or delivery), and every `run` retries what still waits, looking the customers up in Stripe.

An evt_ id seen again with a different body is parked as a conflict: the first body stands.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import stripe

from domain.events import StripeObjectObserved
from domain.trusted import trusted
from eventlog.account_log import append_events
from eventlog.own_tables import (
    claim_and_look_up,
    count_waiting,
    customer_accounts,
    exclusive_ingest,
    lock_customers,
    park,
    park_waiting,
    resolve_waiting,
    save_checkpoint,
    stop_waiting,
    waiting_customers,
)
from eventlog.stores import Connection, Stores
from ingestion.report import IngestReport, TableReport
from ingestion.stripe.reader import StripeReader
from ingestion.stripe.routing import route, route_deferred
from ingestion.stripe.translate import Observation, Rejection, translate_event, translate_listed

SOURCE = "stripe"
LIST_ORDER = ("customer", "subscription", "invoice")  # customers first: they name the accounts
# A lookup of a waiting object's customer that failed for now (connection, 5xx, rate limit: the client
# retried them with backoff, max_network_retries): the object keeps waiting for the next run.
LOOKUP_FAILURES = (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError)
# One that fails for good (404, 400, 403): the objects waiting for that customer are parked with why.
LOOKUP_REFUSED = (stripe.InvalidRequestError, stripe.PermissionError)


@dataclass(slots=True)
class _Item:
    """One thing Stripe sent: an event envelope, or an object read from a list endpoint."""
    raw: Any
    claim: str | None  # the id recorded as seen (evt_..., list:...); None: it has none, it is parked
    digest: bytes
    created: datetime | None
    via: str
    position: str

    def observe(self) -> Observation | Rejection:
        if self.via == "list":
            return translate_listed(self.raw, read_at=self.created)
        return translate_event(self.raw)


@dataclass
class _Batch:
    events: list[StripeObjectObserved] = field(default_factory=list)
    parked: list[tuple[str, str, str, bytes, str]] = field(default_factory=list)  # table, key, reason, record, position
    waiting: list[tuple[str, str, str, bytes, str, str, str]] = field(default_factory=list)  # ... customer, via


class StripeIngester:
    def __init__(
        self,
        *,
        reader: StripeReader | None,
        stores: Stores,
        batch_size: int = 5_000,
        lookback: timedelta = timedelta(hours=1),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._reader = reader
        self._stores = stores
        self._batch_size = batch_size
        self._lookback = lookback
        self._clock = clock

    def run(self) -> IngestReport:
        """Lists (first run), catches up on events, then retries what waits for its customer."""
        assert self._reader is not None, "polling Stripe needs a reader"
        report = IngestReport(source=SOURCE)
        with self._stores.connect(purpose="ingest stripe") as log, exclusive_ingest(log, SOURCE):
            checkpoint = _load_checkpoint(log)
            with log.cursor() as cur:
                accounts = customer_accounts(cur)  # this run's view of the map; each batch re-reads what it lacks
            log.commit()
            if not checkpoint.get("listed"):
                self._ingest_lists(log, report, accounts)
                checkpoint["listed"] = True
                _save_checkpoint(log, checkpoint)
            newest = self._ingest_events(log, report, checkpoint.get("created_gte"), accounts)
            if newest is not None:
                checkpoint["created_gte"] = max(newest, checkpoint.get("created_gte") or 0)
            _save_checkpoint(log, checkpoint)
            self._retry_waiting(log, report.tables.setdefault("retried", TableReport()))
            report.waiting = count_waiting(log)
            log.commit()
        return report

    def record_deliveries(self, envelopes: list[dict], *, via: str = "webhook",
                          log: Connection | None = None) -> IngestReport:
        """Records events pushed to us (webhook deliveries) in one transaction: the same dedup,
        routing and parking as the Events API. On `log` when given (left open), else on a connection
        of its own. Safe to call from several threads at once, each on its own connection."""
        report = IngestReport(source=SOURCE)
        table = report.tables.setdefault(via, TableReport(rows_read=len(envelopes)))
        if log is None:
            with self._stores.connect(purpose="ingest stripe") as own:
                report.waiting = self._commit(own, [_event_item(e, via) for e in envelopes], table, {})
        else:
            report.waiting = self._commit(log, [_event_item(e, via) for e in envelopes], table, {})
        return report

    # -- list endpoints ------------------------------------------------------------------------

    def _ingest_lists(self, log: Connection, report: IngestReport, accounts: dict[str, str]) -> None:
        """Every current object, once: each is recorded as `list:<id>` with its digest in the same
        transaction as its event, so a run killed mid-list relists and skips what it recorded."""
        read_at = self._clock()
        position = f"list@{read_at.isoformat()}"
        for object_type in LIST_ORDER:
            table = report.tables.setdefault(f"list:{object_type}", TableReport())
            page: list[_Item] = []
            for obj in self._reader.listed(object_type):
                table.rows_read += 1
                object_id = obj.get("id") if isinstance(obj, dict) else None
                page.append(_Item(obj, f"list:{object_id}", _digest(obj), read_at, "list", position))
                if len(page) >= self._batch_size:
                    self._commit(log, page, table, accounts)
                    page = []
            self._commit(log, page, table, accounts)

    # -- events ---------------------------------------------------------------------------------

    def _ingest_events(self, log: Connection, report: IngestReport, cursor: int | None,
                       accounts: dict[str, str]) -> int | None:
        table = report.tables.setdefault("events", TableReport())
        since = None if cursor is None else cursor - int(self._lookback.total_seconds())
        newest: int | None = None
        page: list[_Item] = []
        for envelope in self._reader.events(created_gte=since):
            table.rows_read += 1
            created = envelope.get("created")
            if isinstance(created, int):
                newest = created if newest is None else max(newest, created)
            page.append(_event_item(envelope, "events_api"))
            if len(page) >= self._batch_size:
                self._commit(log, page, table, accounts)
                page = []
        self._commit(log, page, table, accounts)
        return newest

    def _retry_waiting(self, log: Connection, table: TableReport) -> None:
        """What waits for a customer: its account may be known by now (a delivery taught it), else
        Stripe is asked again. A lookup that fails for now leaves it waiting for the next run; one
        that fails for good (the customer deleted or unknown, a 404 or a permission error) parks it
        with why: one object never fails the run."""
        customers = waiting_customers(log)
        with log.cursor() as cur:
            found: dict[str, str] = customer_accounts(cur, customers)
        log.commit()
        gone: dict[str, str] = {}  # customer -> why what waits for it belongs to no account, for good
        for customer_id in customers:
            if customer_id in found:
                continue
            try:
                customer = self._reader.customer(customer_id)
            except LOOKUP_FAILURES:
                break  # Stripe is not answering: the rest waits too
            except LOOKUP_REFUSED as error:
                gone[customer_id] = (f"belongs to no account: Stripe refused the lookup of customer {customer_id} "
                                     f"({error.http_status} {error.code or type(error).__name__}: "
                                     f"{' '.join(str(error.user_message or error).split())})")
                continue
            if customer is None or customer.get("deleted"):
                gone[customer_id] = (f"belongs to no account: customer {customer_id} "
                                     f"{'is deleted' if customer else 'does not exist in Stripe (resource_missing)'}")
                continue
            account = (customer.get("metadata") or {}).get("account_id")
            if isinstance(account, str) and account:
                found[customer_id] = account
        self._commit(log, [], table, {}, learned=found)
        if gone:
            with log.transaction(), log.cursor() as cur:
                table.parked += stop_waiting(cur, SOURCE, gone)

    # -- one batch, one transaction ---------------------------------------------------------------

    def _commit(self, log: Connection, items: list[_Item], table: TableReport, accounts: dict[str, str],
                *, learned: dict[str, str] | None = None) -> int:
        """Claims the items' ids and records what the claimed ones produce, in one transaction;
        `accounts` (the caller's view of the map) learns what the batch taught. Returns how many
        objects it left waiting for their customer."""
        if not items and not learned:
            return 0
        batch = _Batch()
        items.sort(key=lambda i: (i.created or datetime.min.replace(tzinfo=UTC), str(i.claim)))
        with log.transaction(), log.cursor() as cur:
            seen = [(item, item.observe()) for item in items]
            named = {o.customer_id for _, o in seen
                     if isinstance(o, Observation) and o.customer_id and o.customer_id not in accounts}
            kept = {id(item) for item in self._claimed(log, items, batch, table, named, accounts)}
            observed = []
            for item, observation in seen:
                if id(item) not in kept:
                    continue
                if isinstance(observation, Rejection):
                    table.parked += 1
                    batch.parked.append((_parked_table(item), str(_get(item.raw, "id")), observation.reason,
                                         orjson.dumps(item.raw), item.position))
                else:
                    observed.append((item, observation))
            routing = route(observed, accounts)
            routing.learned.update(learned or {})
            current = lock_customers(cur, {**dict.fromkeys(routing.waits_for()), **routing.learned})
            accounts.update({c: a for c, a in current.items() if a})
            waiting = route_deferred(routing, accounts)
            for item, observation, account in routing.routed:
                batch.events.append(self._event(observation, account, item.position, item.via))
            mapped = [customer for customer, account in current.items() if account]
            for record, position, via, customer_id in resolve_waiting(cur, SOURCE, mapped):
                observation = _Item(record, None, b"", _list_read_at(position), via, position).observe()
                batch.events.append(self._event(observation, accounts[customer_id], position, via))
            for item, observation in waiting:
                batch.waiting.append((observation.object_type, str(observation.object.get("id")),
                                      f"belongs to no account: customer {observation.customer_id} has no "
                                      "metadata.account_id (recorded once it has)", orjson.dumps(item.raw),
                                      item.position, observation.customer_id, item.via))
            if batch.parked:
                park(cur, SOURCE, batch.parked)
            if batch.waiting:
                park_waiting(cur, SOURCE, batch.waiting)
            table.appended += append_events(log, batch.events)  # last: it takes the log's table lock
        return len(batch.waiting)

    def _claimed(self, log: Connection, items: list[_Item], batch: _Batch, table: TableReport,
                 named: set[str], accounts: dict[str, str]) -> list[_Item]:
        """The items whose id this transaction claimed (and those without an id); a known evt_ id
        with another body is parked as a conflict, once per batch. In the same round trip,
        `accounts` learns the accounts of the customers `named`."""
        first: dict[str, _Item] = {}
        for item in items:
            if item.claim is not None:
                first.setdefault(item.claim, item)
        changed_too = any(item.via == "list" for item in items)
        claimed, known, found = claim_and_look_up(log, [(i.claim, i.digest, i.created) for i in first.values()],
                                                  sorted(named), changed_too=changed_too)
        accounts.update(found)
        known.update({c: i.digest for c, i in first.items() if c in claimed})
        kept = []
        for item in items:
            if item.claim is None or (item.claim in claimed and first[item.claim] is item):
                kept.append(item)
            elif not changed_too and known.get(item.claim) != item.digest:
                table.parked += 1
                batch.parked.append(("event", item.claim, f"{item.claim} was recorded before with a different "
                                     "body; the first one stands", orjson.dumps(item.raw), item.claim))
                known[item.claim] = item.digest  # park each conflicting body once per batch
        return kept

    def _event(self, observation: Observation, account: str, position: str, via: str) -> StripeObjectObserved:
        return trusted(
            StripeObjectObserved,
            originator_id=account, originator_version=0, store="stripe", table=observation.object_type,
            key={"id": observation.object["id"]}, position=position, source_time=observation.source_time,
            recorded_at=self._clock(), object=observation.object, deleted=observation.deleted,
            event_id=observation.event_id, event_type=observation.event_type,
            event_created=observation.event_created, previous_attributes=observation.previous_attributes, via=via,
        )


def _event_item(envelope: Any, via: str) -> _Item:
    event_id, created = _get(envelope, "id"), _get(envelope, "created")
    claimable = isinstance(event_id, str) and isinstance(created, int) and not isinstance(created, bool)
    return _Item(envelope, event_id if claimable else None, _digest(envelope),
                 datetime.fromtimestamp(created, UTC) if claimable else None, via, f"{event_id}")


def _get(raw: Any, name: str) -> Any:
    return raw.get(name) if isinstance(raw, dict) else None


def _parked_table(item: _Item) -> str:
    return str(_get(item.raw, "object")) if item.via == "list" else "event"


def _list_read_at(position: str) -> datetime | None:
    """When a listed object was read (its position is list@<read time>); None for an event."""
    return datetime.fromisoformat(position.removeprefix("list@")) if position.startswith("list@") else None


def _digest(envelope: Any) -> bytes:
    return hashlib.blake2b(orjson.dumps(envelope, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


def _load_checkpoint(log: Connection) -> dict:
    row = log.execute("SELECT position FROM ingest_checkpoint WHERE source = %s", (SOURCE,)).fetchone()
    log.commit()
    return dict(row[0]) if row else {}


def _save_checkpoint(log: Connection, checkpoint: dict) -> None:
    with log.transaction():
        save_checkpoint(log, SOURCE, checkpoint)
