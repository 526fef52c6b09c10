"""`apply`: make the plan real, with an audit record and a domain event for every change.

The legacy stores and the event store (audit, outbox) are different databases, so no transaction
can hold a legacy write together with its audit record. An intent protocol stands in for one:

  0. Lock: one `apply` at a time (an advisory lock on the event store, freed if the process dies);
     followers of `project` hold it shared while they write (projections/follow/), so an `apply`
     never runs beside them, and between them their partition leases keep them apart.
     Rules whose version is known with another digest are refused (RulesConflict) before anything.
  1. Recover: intents of an earlier, interrupted run still 'pending' are settled first. Once no
     session of that run is left on a store: its write transaction (the xid recorded with the
     intents before any write, projections/apply/writes.py) committed and the row holds what the
     intent writes -> 'applied'; committed without -> 'stale'; it never began or did not commit ->
     'abandoned' (nothing is written; the fresh plan redoes it if it still needs doing). A row
     that holds the value proves nothing alone. Their events are finished as in step 5.
  2. Plan (projections/plan.py), choose the accounts (--account, --max-accounts), and refuse
     past the blast-radius guard. Then per batch of accounts, re-planned with their true states:
  3. Intent: in ONE event-store transaction, the audit rows ('pending': account, table, key,
     column, from, to, bookkeeping, rules version and digest, causes) and their outbox events ('held', not
     publishable) are committed. Nothing has been written to a legacy store yet.
  4. Write: each store in ONE transaction of its own, its xid recorded with its intents first, every
     write compare-and-set (projections/apply/cas_sql.py). 1 row -> applied; 0 rows -> stale (changed
     underneath; left alone); a table the store refuses as not shaped as read -> all of it stale.
  5. Settle: in ONE event-store transaction the audit rows become 'applied'/'stale', an event with
     an applied correction becomes 'ready' with its body fixed, one with none 'void'.
  6. Relay the ready events (projections/apply/relay.py), outside the lock; a broker that is down only
     leaves them waiting.

A kill -9 anywhere: before 3 commits, nothing happened; between 3 and 5, every legacy change made
has its pending audit row and held event, and recovery settles them; after 5, all is recorded and
events wait in the outbox. Nothing is applied twice: a recovered intent is never re-executed,
and a fresh plan reads the stores as they are.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime

from psycopg.types.json import Jsonb

from domain.catalog import fold_catalog
from domain.diff import Correction
from domain.drift import open_drift
from domain.legacy_tables import STORES
from domain.outgoing import bookkeeping, causes, event_id, meanings
from domain.owners import Owners
from domain.rules import Rules
from eventlog.own_tables import check_known_rules, remember_rules
from eventlog.range_reads import catalog_events
from eventlog.stores import Connection, Stores
from projections.apply.account_plans import AccountPlan, replan
from projections.apply.audit import Intent, Outcome, OutgoingEvent, RunInfo, pending, record, settle
from projections.apply.writes import resolve_pending, write_store
from projections.executor import Executor
from projections.plan import PlanResult, plan

_LOCK_ID = 7_310_002
APPLY_LOCK = _LOCK_ID  # followers take it shared (pg_try_advisory_xact_lock_shared)
Step = Callable[[str], None]


class ApplyRefused(RuntimeError):
    """The run would change more accounts than allowed; nothing was written."""


class ApplyBusy(RuntimeError):
    """Another `apply` holds the lock."""


@dataclass(frozen=True)
class ApplyOptions:
    account: str | None = None
    force: bool = False
    max_accounts: int | None = None
    max_share: float = 0.10
    workers: int = 2
    batch_accounts: int = 1000
    owners: Owners = field(default_factory=Owners)  # who writes what: each correction's drift names its owner


DEFAULT_OPTIONS = ApplyOptions()


@dataclass
class ApplyResult:
    run_id: str
    as_of: datetime
    rules_version: str
    rules_digest: str = ""
    accounts_checked: int = 0
    accounts_disagreeing: int = 0
    accounts_chosen: int = 0
    done: list[tuple[Correction, str]] = field(default_factory=list)  # (correction, applied | stale)
    events: Counter[str] = field(default_factory=Counter)  # ready, void
    recovered: Counter[str] = field(default_factory=Counter)  # applied, abandoned (intents of earlier runs)
    plan_digest: str | None = None  # `apply --plan`: the saved plan's
    settled_before: Counter[str] = field(default_factory=Counter)  # its corrections an interrupted run settled

    def count(self, status: str) -> int:
        return sum(1 for _, s in self.done if s == status)


def apply(stores: Stores, rules: Rules, as_of: datetime, options: ApplyOptions = DEFAULT_OPTIONS,
          *, on_step: Step = lambda _: None, executor: Executor | None = None,
          planned: PlanResult | None = None) -> ApplyResult:
    """`executor` runs the plan's account ranges (bootstrap's Dask one; None: here). `planned`: a plan
    already made (backfill's corrections at the same T and rules): step 2 takes it instead of planning;
    each batch is still re-planned against the stores as they are when it is written."""
    result = ApplyResult(run_id=str(uuid.uuid4()), as_of=as_of, rules_version=rules.version,
                         rules_digest=rules.digest)
    with _exclusive(stores):
        with _es(stores) as conn:
            check_known_rules(conn, rules)
        recover(stores, result)
        on_step("recovered")
        if planned is None:
            planned = plan(stores, rules, as_of, account=options.account, workers=options.workers, executor=executor,
                           owners=None)  # drift is said for what each batch writes
        on_step("planned")
        disagreeing, chosen = choose_accounts(planned.corrections, planned.accounts_checked, options)
        result.accounts_checked, result.accounts_disagreeing = planned.accounts_checked, len(disagreeing)
        result.accounts_chosen = len(chosen)
        if not chosen:
            return result
        run = RunInfo(result.run_id, rules.version, as_of, rules.digest)
        start_run(stores, run, rules)
        catalog = fold_catalog(catalog_events(stores), as_of=as_of)
        for batch in _chunks(chosen, options.batch_accounts):
            apply_batch(stores, run, replan(stores, rules, as_of, catalog, batch, owners=options.owners), result, on_step)
        _finish_run(stores, result)
    return result


def choose_accounts(corrections: Sequence[Correction], checked: int,
                    options: ApplyOptions) -> tuple[list[str], list[str]]:
    """Pure: the disagreeing accounts (in id order) and those this run changes (the first
    --max-accounts of them); raises ApplyRefused past the blast-radius guard."""
    disagreeing = sorted({c.account_id for c in corrections})
    chosen = disagreeing[:options.max_accounts] if options.max_accounts is not None else disagreeing
    check_blast_radius(len(chosen), checked, options)
    return disagreeing, chosen


def check_blast_radius(changing: int, checked: int, options: ApplyOptions) -> None:
    """Refuses a run that changes more than max_share of the accounts checked (not with --account or --force)."""
    if options.force or options.account is not None or changing == 0:
        return
    if changing > options.max_share * checked:
        raise ApplyRefused(
            f"refusing to change {changing} of {checked} accounts checked ({changing / checked:.1%}), more than "
            f"--max-share {options.max_share:g} allows; rerun with --force, a higher --max-share, "
            f"or fewer accounts with --max-accounts N")


def intents_for(plans: Sequence[AccountPlan], run: RunInfo) -> tuple[list[Intent], list[OutgoingEvent]]:
    """Pure: every correction with its bookkeeping, causes and event; one event per change of meaning."""
    intents, events = [], []
    for p in plans:
        for meaning in meanings(p.corrections, p.state):
            eid = event_id(p.state.account_id or "", meaning, run.rules_version, run.run_id, p.corrections)
            events.append(OutgoingEvent(eid, p.state.account_id or "", meaning.type, meaning.subject))
            for i in meaning.covers:
                c = p.corrections[i]
                intents.append(Intent(c, bookkeeping(c, p.state), causes(c, p.state), eid))
    return intents, events


def recover(stores: Stores, result: ApplyResult, *, only: Callable[[str], bool] | None = None) -> None:
    """Settles the pending intents of earlier runs (`only`: of the accounts it accepts, e.g. a
    follower's partitions)."""
    with _es(stores) as conn:
        left = [(i, run) for i, run in pending(conn) if only is None or only(i.correction.account_id)]
    if not left:
        return
    outcomes: list[Outcome] = []
    for store, (run_ids, intents) in pending_by_store(left).items():
        outcomes += resolve_pending(stores, store, run_ids, intents)
    with _es(stores) as conn, conn.transaction():
        result.events.update(settle(conn, outcomes))
    result.recovered.update(o.status for o in outcomes)


def pending_by_store(left: Sequence[tuple[Intent, str]]) -> dict[str, tuple[list[str], list[Intent]]]:
    """Pure: the pending intents of earlier runs per store (in STORES order, stores with none left
    out), with the runs that recorded them, sorted: what recovery resolves on each store."""
    found: dict[str, tuple[list[str], list[Intent]]] = {}
    for store in STORES:
        mine = [(i, run_id) for i, run_id in left if i.store == store]
        if mine:
            found[store] = (sorted({r for _, r in mine}), [i for i, _ in mine])
    return found


def apply_batch(stores: Stores, run: RunInfo, plans: list[AccountPlan], result: ApplyResult,
                on_step: Step, *, also: Callable[[Connection], None] = lambda _: None,
                kept: Connection | None = None) -> None:
    """Steps 3-5 for one batch of planned accounts (also what a follower of `project` runs); `also`
    writes more in the transaction that records the intents. `kept`: an autocommit event-store
    session to write the audit on (a follower keeps one across its steps), else one is opened
    for each of those transactions."""
    intents, events = intents_for(plans, run)
    if not intents:
        return
    with _es(stores, kept) as conn, conn.transaction():
        intents = record(conn, run, intents, events)
        also(conn)
    on_step("recorded")
    outcomes: list[Outcome] = []
    for store in STORES:
        mine = [i for i in intents if i.store == store]
        if mine:
            outcomes += write_store(stores, run.run_id, mine, on_step, kept=kept)
            on_step(f"committed:{store}")
    with _es(stores, kept) as conn, conn.transaction():
        result.events.update(settle(conn, outcomes))
    on_step("settled")
    status = {o.audit_id: o.status for o in outcomes}
    result.done += [(i.correction, status[i.audit_id]) for i in intents]


@contextmanager
def _exclusive(stores: Stores) -> Iterator[None]:
    with stores.connect(purpose="apply", autocommit=True) as conn:
        if not conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_ID,)).fetchone()[0]:  # type: ignore[index]  # always one row
            raise ApplyBusy("another `recompute apply` is running; try again when it has finished")
        yield  # the lock goes with the session, also when the process is killed


def _es(stores: Stores, kept: Connection | None = None) -> AbstractContextManager[Connection]:
    """A new event-store session (closed after), or `kept` (left open)."""
    return stores.connect(purpose="apply") if kept is None else nullcontext(kept)


def start_run(stores: Stores, run: RunInfo, rules: Rules, *,
              also: Callable[[Connection], object] = lambda _: None, kept: Connection | None = None) -> None:
    """The run's apply_run row and its rules remembered; `also` writes more in that transaction."""
    with _es(stores, kept) as conn, conn.transaction():
        conn.execute("INSERT INTO apply_run (run_id, as_of, rules_version, rules_digest, plan_digest) "
                     "VALUES (%s, %s, %s, %s, %s)",
                     (run.run_id, run.as_of, run.rules_version, run.rules_digest, run.plan_digest))
        remember_rules(conn, rules, run.run_id)
        also(conn)


def _finish_run(stores: Stores, result: ApplyResult) -> None:
    summary = {"accounts_checked": result.accounts_checked, "accounts_disagreeing": result.accounts_disagreeing,
               "accounts_chosen": result.accounts_chosen, "applied": result.count("applied"),
               "stale": result.count("stale"), "events": dict(result.events), "recovered": dict(result.recovered),
               "drift_open": open_drift(c for c, _ in result.done)}
    with _es(stores) as conn:
        conn.execute("UPDATE apply_run SET finished_at = %s, summary = %s WHERE run_id = %s",
                     (datetime.now(UTC), Jsonb(summary), result.run_id))


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
