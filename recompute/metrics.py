"""`GET /metrics`: the names of cli.md "Metrics", in Prometheus text (prometheus-client).

What lives in the event store is read at scrape time by `EventStoreCollector`, with queries that
stay cheap on a large log: the events per source are counted once and then only past the last
notification id counted (ids are issued in commit order: the appends hold the table's EXCLUSIVE
lock, so nothing can later appear below an id already seen). What happens in this process
(webhook deliveries by outcome, their latency) is counted here. `recompute_correction_lag_seconds`
is registered for the continuous projection to observe: `project --port` observes it.
`FollowCollector` adds the followers' state (breaker open, accounts withheld, partitions held of
how many) and `ChangeStreamCollector` each change stream's slot (read, retained WAL), in both
`serve` and `project --port`. What the alerts read (ops/prometheus/recompute-rules.yml) is all here.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from dataclasses import replace

import psycopg_pool
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from domain.legacy_tables import STORES
from eventlog.own_tables import recorded_blocks
from eventlog.stores import OperationalError, Stores
from eventlog.tables_present import has_columns, has_tables
from eventlog.tail import events_by_store_since
from ingestion.legacy.cdc.setup import stream_status

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# The store of each checkpoint: "legacy:cf_prod.accounts" -> cf_prod; "cdc:cf_prod" -> cf_prod; "stripe" -> stripe.
# A store its change stream carries (a cdc: checkpoint, which an idle stream still refreshes) is as
# current as its stream: its snapshot checkpoints stop moving once the stream takes over.
_CHECKPOINT_AGES = """
WITH ages AS (
  SELECT CASE WHEN source LIKE 'legacy:%' THEN split_part(substr(source, 8), '.', 1)
              WHEN source LIKE 'cdc:%' THEN substr(source, 5) ELSE source END AS store,
         source LIKE 'cdc:%' AS streamed, now() - updated_at AS age
  FROM ingest_checkpoint)
SELECT store, extract(epoch FROM CASE WHEN bool_or(streamed) THEN min(age) FILTER (WHERE streamed)
                                      ELSE max(age) END)::float8
FROM ages GROUP BY 1 ORDER BY 1"""
_APPLIED = "SELECT tbl, count(*) FROM correction_audit WHERE status = 'applied' GROUP BY tbl ORDER BY tbl"
_LAST_RUN = ("SELECT (summary ->> 'accounts_disagreeing')::bigint FROM apply_run WHERE summary IS NOT NULL "
             "ORDER BY finished_at DESC NULLS LAST LIMIT 1")
_DRIFT_OPEN = ("SELECT o.key, c.key, c.value::bigint FROM (SELECT summary FROM apply_run WHERE summary IS NOT NULL "
               "ORDER BY finished_at DESC NULLS LAST LIMIT 1) r, jsonb_each(r.summary -> 'drift_open') o, "
               "jsonb_each_text(o.value) c ORDER BY 1, 2")
# A column the projector corrected and a legacy writer set wrong again: counted when the projector
# corrects it once more (its audit row's drift says overwrote_correction, and who wrote it).
_REWRITTEN = ("SELECT drift ->> 'owner', tbl, count(*) FROM correction_audit WHERE status = 'applied' "
              "AND drift ->> 'cause' = 'overwrote_correction' GROUP BY 1, 2 ORDER BY 1, 2")
_COUNTS = ("SELECT (SELECT count(*) FROM parked_record WHERE resolved_at IS NULL), "
           "(SELECT count(*) FROM outbox_event WHERE status IN ('held', 'ready'))")
# The age of the oldest of what waits (0 when nothing does): what the alerts on waiting read.
_OLDEST = ("SELECT coalesce(extract(epoch FROM now() - (SELECT min(created_at) FROM outbox_event "
           "                                            WHERE status IN ('held', 'ready'))), 0)::float8, "
           "(SELECT count(*) FROM parked_record WHERE waiting_for IS NOT NULL AND resolved_at IS NULL "
           "                                    AND given_up_at IS NULL), "
           "coalesce(extract(epoch FROM now() - (SELECT min(parked_at) FROM parked_record "
           "                                     WHERE waiting_for IS NOT NULL AND resolved_at IS NULL "
           "                                     AND given_up_at IS NULL)), 0)::float8")


class EventStoreCollector:
    """Reads the event store at each scrape; its errors (store down) reach the caller of the scrape."""

    def __init__(self, pool: psycopg_pool.ConnectionPool, *, timeout: float = 5.0) -> None:
        self._pool = pool
        self._timeout = timeout
        self._lock = threading.Lock()
        self._counted_upto = 0
        self._by_source: Tally[str] = Tally()

    def collect(self):
        with self._lock, self._pool.connection(timeout=self._timeout) as conn, conn.transaction():
            for source, count, upto in events_by_store_since(conn, self._counted_upto):
                self._by_source[source] += count
                self._counted_upto = max(self._counted_upto, upto)
            ages = conn.execute(_CHECKPOINT_AGES).fetchall()
            applied = conn.execute(_APPLIED).fetchall()
            disagreeing = conn.execute(_LAST_RUN).fetchone()
            drift_open = conn.execute(_DRIFT_OPEN).fetchall()
            rewritten = conn.execute(_REWRITTEN).fetchall() if has_columns(conn, "correction_audit", "drift") else []
            parked, waiting = conn.execute(_COUNTS).fetchone()
            oldest_event, stripe_waiting, oldest_stripe = conn.execute(_OLDEST).fetchone()
            blocked = recorded_blocks(conn)
            by_source = dict(self._by_source)
        appended = CounterMetricFamily("recompute_events_appended", "Events in the account event log, by source",
                                       labels=["source"])
        for source, count in sorted(by_source.items()):
            appended.add_metric([source], count)
        lag = GaugeMetricFamily("recompute_source_lag_seconds",
                                "Seconds since the oldest checkpoint of each source moved", labels=["source"])
        for source, age in ages:
            lag.add_metric([source], age)
        corrections = CounterMetricFamily("recompute_corrections_applied", "Corrections applied, by store.table",
                                          labels=["table"])
        for table, count in applied:
            corrections.add_metric([table], count)
        yield from (appended, lag, corrections)
        yield GaugeMetricFamily("recompute_accounts_disagreeing", "Accounts disagreeing at the last apply",
                                value=disagreeing[0] if disagreeing else None)
        open_ = GaugeMetricFamily("recompute_drift_open", "Corrections the last apply found, by owner and cause",
                                  labels=["owner", "cause"])
        for owner, cause, n in drift_open:
            open_.add_metric([owner, cause], n)
        again = CounterMetricFamily("recompute_corrections_rewritten",
                                    "Corrected columns a legacy writer set wrong again, by owner and store.table",
                                    labels=["owner", "table"])
        for owner, table, n in rewritten:
            again.add_metric([owner, table], n)
        yield from (open_, again)
        yield GaugeMetricFamily("recompute_parked_records", "Records parked with a reason", value=parked)
        yield GaugeMetricFamily("recompute_outbox_waiting", "Outgoing domain events not yet published",
                                value=waiting)
        yield GaugeMetricFamily("recompute_outbox_oldest_waiting_seconds",
                                "Age of the oldest outgoing domain event not yet published (0: none waits)",
                                value=oldest_event)
        yield GaugeMetricFamily("recompute_stripe_waiting_objects",
                                "Stripe objects waiting for their customer to name an account", value=stripe_waiting)
        yield GaugeMetricFamily("recompute_stripe_waiting_oldest_seconds",
                                "Age of the oldest Stripe object waiting for its customer's account (0: none waits)",
                                value=oldest_stripe)
        tables = GaugeMetricFamily("recompute_legacy_table_blocked", "1 for each legacy table whose schema is not "
                                   "the one recompute reads (nothing of it recorded or corrected), with why",
                                   labels=["table", "reason"])
        for table, why in blocked.items():
            tables.add_metric([table, why], 1)
        yield tables


class ServeMetrics:
    """The registry of `recompute serve`: the event store's figures and this process's own."""

    def __init__(self, pool: psycopg_pool.ConnectionPool) -> None:
        disable_created_metrics()  # no *_created series beside each counter and histogram
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(EventStoreCollector(pool))
        self.deliveries = Counter("recompute_webhook_deliveries", "Webhook deliveries by outcome", ["outcome"],
                                  registry=self.registry)
        self.delivery_seconds = Histogram("recompute_webhook_delivery_seconds",
                                          "From a delivery's arrival to its answer", buckets=LATENCY_BUCKETS,
                                          registry=self.registry)
        self._pool = pool
        self.correction_lag = Histogram("recompute_correction_lag_seconds",
                                        "From a source commit to its correction committed",
                                        buckets=LATENCY_BUCKETS, registry=self.registry)

    def watch_followers(self, stores: Stores) -> None:
        """`project --port` and `serve`: the followers' state and the change streams too, read at each
        scrape (from whichever process is scraped: a lost follower is seen from the others)."""
        self.registry.register(FollowCollector(self._pool))
        self.registry.register(ChangeStreamCollector(self._pool, stores))


_STREAMED = "SELECT substr(source, 5) FROM ingest_checkpoint WHERE source LIKE 'cdc:%' ORDER BY 1"
_FOLLOW = ("SELECT (SELECT open::int FROM follow_breaker WHERE id = 1), "
           "(SELECT count(*) FROM follow_withheld w JOIN read_model_generation g ON g.id = w.generation AND g.active), "
           "(SELECT count(*) FROM follow_lease WHERE owner IS NOT NULL AND expires_at > now()), "
           "(SELECT count(*) FROM follow_member WHERE alive_until > now()), "
           "(SELECT count(*) FROM follow_lease)")


class FollowCollector:
    """The continuous projection's state in the event store (projections/follow/)."""

    def __init__(self, pool: psycopg_pool.ConnectionPool, *, timeout: float = 5.0) -> None:
        self._pool = pool
        self._timeout = timeout

    def collect(self):
        with self._pool.connection(timeout=self._timeout) as conn:
            if not has_tables(conn, "follow_breaker", "follow_lease", "follow_withheld", "follow_member"):
                return
            paused, withheld, leased, followers, partitions = conn.execute(_FOLLOW).fetchone()
        yield GaugeMetricFamily("recompute_follow_writing_paused",
                                "1 while the circuit breaker keeps the followers from writing (`project --resume`)",
                                value=paused or 0)
        yield GaugeMetricFamily("recompute_follow_withheld_accounts",
                                "Accounts whose corrections wait for the breaker to be resumed", value=withheld)
        yield GaugeMetricFamily("recompute_follow_partitions_leased", "Partitions a live follower holds",
                                value=leased)
        yield GaugeMetricFamily("recompute_follow_partitions", "Partitions of the continuous projection",
                                value=partitions)
        yield GaugeMetricFamily("recompute_followers", "Followers alive", value=followers)


class ChangeStreamCollector:
    """Each change stream that `cdc setup` made (a `cdc:` checkpoint in the event store), read from its
    legacy server at each scrape (`recompute cdc status`'s figures): whether a reader streams from its
    slot, and how much WAL the slot retains. A server that cannot be reached counts as a stream down."""

    def __init__(self, pool: psycopg_pool.ConnectionPool, stores: Stores, *, timeout: float = 5.0) -> None:
        self._pool = pool
        # a legacy server that does not answer costs a scrape `timeout` seconds, not the OS's TCP timeout
        self._stores = replace(stores, connect_timeout=max(1, int(timeout)))
        self._timeout = timeout

    def collect(self):
        with self._pool.connection(timeout=self._timeout) as conn:
            if not has_tables(conn, "ingest_checkpoint"):
                return
            streamed = [store for (store,) in conn.execute(_STREAMED) if store in STORES]
        up = GaugeMetricFamily("recompute_cdc_stream_up",
                               "1 while a reader streams from the store's replication slot; 0 when the slot is "
                               "idle, gone, or its server unreachable", labels=["source"])
        retained = GaugeMetricFamily("recompute_cdc_slot_retained_wal_bytes",
                                     "WAL the store's replication slot keeps on its server", labels=["source"])
        for store in streamed:
            try:
                status = stream_status(store, self._stores)
            except OperationalError:
                up.add_metric([store], 0)
                continue
            up.add_metric([store], 1 if status["exists"] and status["active"] else 0)
            if status["exists"]:
                retained.add_metric([store], status["retained_bytes"])
        yield from (up, retained)
