"""The composition root: settings in, adapters out. The only place that wires I/O.

`wire(settings)` checks the settings against the servers, then returns the `App`: the `Stores` (every
connection is opened through them), the event log, the executor, the relay and the rules source. A
command receives what it needs from the App and passes the adapters on by keyword; Dask tasks and
worker processes receive the `Stores`, which are frozen and picklable (so is the App).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from domain.legacy_tables import STORES
from eventlog.own_tables import ensure_own_schema, upgrade_own_schema
from eventlog.postgres_log import PostgresEventLog
from eventlog.stores import Connection, OperationalError, Stores
from ingestion.legacy.schema import describe, store_problems
from ingestion.legacy.schema import log as log_schema
from projections.executor import Executor, InlineExecutor
from projections.read_model import generations
from projections.read_model.generations import Generation
from projections.read_model.tables import ensure_read_model
from recompute.dask_executor import DaskExecutor
from recompute.embedded import embedded_dsns
from recompute.settings import DSN_VARIABLES, Settings, SettingsError

if TYPE_CHECKING:  # imported where used: stripe, kombu and their clients are a third of every command's start
    from ingestion.jobs import IngestJob
    from projections.apply.relay import RelayReport

SOURCES = (*STORES, "stripe")


@dataclass(frozen=True)
class RulesSource:
    """Where the active rules come from: the active generation, or before any `backfill --apply`
    the default ones (RECOMPUTE_RULES, else the built-in v1), which the CLI reads before wiring so
    that a bad file writes nothing (projections/read_model/active_rules.py chooses between them)."""

    stores: Stores

    def active(self) -> Generation | None:
        """The active generation (None before any `backfill --apply`); reads only."""
        with self.stores.connect(purpose="rules", read_only=True) as conn:
            return generations.active(conn)


@dataclass(frozen=True)
class App:
    """The adapters of one command. Frozen and picklable: `project` hands it to its ingest process."""

    settings: Settings
    stores: Stores
    # the schema problems of each legacy store the command reads, as `wire` found them (ingestion/legacy/
    # schema.py: {"store.table": why}, none missing): a command need not read the stores' columns again
    legacy_problems: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def rules(self) -> RulesSource:
        return RulesSource(stores=self.stores)

    def event_log(self) -> PostgresEventLog:
        """The event log, opened (it holds a pool of the library's): close it, or use it in `with`."""
        return PostgresEventLog(self.stores)

    def relay(self) -> RelayReport | None:
        """Publishes the outbox to RECOMPUTE_BROKER_URL; None when it is not set (the events wait)."""
        if not self.settings.broker_url:
            return None
        from projections.apply.relay import relay

        return relay(stores=self.stores, broker_url=self.settings.broker_url)

    def ingest_jobs(self, source: str, *, batch_size: int = 20_000) -> list[IngestJob]:
        from ingestion.jobs import IngestJob

        chosen = SOURCES if source == "all" else (source,)
        jobs = []
        for name in chosen:
            if name in STORES:
                jobs.append(IngestJob(source=name, stores=self.stores, batch_size=batch_size))
            elif self.settings.stripe_api_key:
                jobs.append(self.stripe_job(batch_size=batch_size))
            elif source == "stripe":
                raise SettingsError("STRIPE_API_KEY", "not set, so Stripe cannot be polled")
        return jobs

    def executor(self, workers: int, *, inline: bool = False) -> Executor:
        """Where the partitions, or the account ranges, of one command run: here for one worker or one
        account (`inline`), else on Dask (a LocalCluster of `workers` processes, or the scheduler at
        RECOMPUTE_DASK_SCHEDULER). Close it with `close_executor` (a context manager in the CLI)."""
        if inline or (workers <= 1 and not self.settings.dask_scheduler):
            return InlineExecutor()
        return DaskExecutor(workers=workers, scheduler=self.settings.dask_scheduler)

    def check_stripe(self) -> None:
        check_stripe(self.settings)

    def stripe_job(self, *, batch_size: int = 5_000) -> IngestJob:
        from ingestion.jobs import IngestJob

        return IngestJob(source="stripe", stores=self.stores, stripe_api_key=self.settings.stripe_api_key,
                         stripe_api_base=self.settings.stripe_api_base, batch_size=batch_size)


def check_stripe(settings: Settings) -> None:
    """Raises SettingsError naming the variable when Stripe cannot be used as configured."""
    if not settings.stripe_api_key:
        return
    import stripe

    from ingestion.stripe.reader import StripeApiReader

    reader = StripeApiReader(api_key=settings.stripe_api_key, api_base=settings.stripe_api_base,
                             max_network_retries=1)
    try:
        reader.check()
    except stripe.AuthenticationError as error:
        raise SettingsError("STRIPE_API_KEY", f"Stripe refused it: {error.user_message}") from None
    except stripe.APIConnectionError:
        variable = "RECOMPUTE_STRIPE_API_BASE" if settings.stripe_api_base else "STRIPE_API_KEY"
        where = settings.stripe_api_base or "api.stripe.com"
        raise SettingsError(variable, f"cannot reach Stripe at {where}") from None


def wire(settings: Settings, *, uses_stripe: bool = False, reads_legacy: Sequence[str] = (),
         writes: bool = True) -> App:
    """Resolves the embedded default where a DSN is unset, checks every database answers, that the
    legacy stores the command reads hold their tables, and Stripe when the command uses it; only
    then, for a command that `writes`, prepares our tables: a bad setting writes nothing, and a
    read-only command (plan, explain) never creates anything."""
    dsns = dict(settings.dsns)
    if settings.needs_embedded:
        embedded = embedded_dsns(settings.data_dir)
        dsns = {store: dsn or embedded[store] for store, dsn in dsns.items()}
    stores = Stores.from_dsns(dsns)  # type: ignore[arg-type]
    with ExitStack() as sessions:  # one session a store: it answers, then the legacy ones read hold their tables
        conns = {store: sessions.enter_context(_reachable(stores, store)) for store in dsns}
        problems = {store: _check_legacy_tables(conns[store], store, embedded=settings.dsns[store] is None)
                    for store in reads_legacy}
    app = App(settings=settings, stores=stores, legacy_problems=problems)
    if uses_stripe:
        app.check_stripe()
    if writes:
        ensure_own_schema(stores.eventstore)
        with stores.connect(purpose="bootstrap") as conn:
            ensure_read_model(conn)  # so that a later plan can keep the facts it folds (it creates nothing)
    else:
        upgrade_own_schema(stores.eventstore)
    return app


def _check_legacy_tables(conn: Connection[Any], store: str, *, embedded: bool) -> dict[str, str]:
    """The store holds the tables of legacy-stores.md that recompute reads. A table whose columns are
    not the ones read (ingestion/legacy/schema.py) is not a bad setting: it is blocked, said here
    once, and the other tables go on. Returns those problems."""
    problems = store_problems(conn, store)
    missing_tables = [table.split(".", 1)[1] for table, why in problems.items() if why == "no such table"]
    for line in describe({table: why for table, why in problems.items() if why != "no such table"}):
        log_schema.warning("%s (nothing of it is read or corrected until its schema matches again)", line)
    if not missing_tables:
        return problems
    hint = ("the embedded default's stores are empty until `recompute demo` fills them; set it to the "
            f"{store} store's DSN") if embedded else f"is it the {store} store of legacy-stores.md?"
    raise SettingsError(DSN_VARIABLES[store], f"database {conn.info.dbname} has no table "
                                              f"{', '.join(missing_tables)} ({hint})")


def _reachable(stores: Stores, store: str) -> Connection[Any]:
    try:
        return stores.connect(store, purpose="bootstrap")
    except OperationalError as error:
        reason = " ".join(str(error).split())
        raise SettingsError(DSN_VARIABLES[store], f"cannot connect: {reason}") from None


def default_workers() -> int:
    """--workers when not given: the CPUs this process may run on."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


@contextmanager
def running(executor: Executor) -> Iterator[Executor]:
    """The executor for one command, made ready first (an unreachable scheduler is a SettingsError
    before anything is written; a local cluster starts when first given work), closed (its cluster
    stopped) when the command ends."""
    try:
        ready = getattr(executor, "ready", None)
        if ready is not None:
            ready()
        yield executor
    finally:
        close = getattr(executor, "close", None)
        if close is not None:
            close()
