"""A follower of `project`: level-triggered projection and apply for the partitions it leases.

One `step()` is one batch, and holds everything it writes to the projection in ONE event-store
transaction (the fence):

  1. balance the leases (projections/follow/leases.py): heartbeat, fair share, claims;
  2. open the fence transaction: the apply lock shared (no `apply` runs beside followers), then
     `fence` renews and row-locks the leases still ours; nothing below touches another partition;
  3. settle the pending intents of dead runs in our partitions (apply's recovery, filtered);
  4. read the log past each partition's position (notification ids, in commit order): every new
     event marks its account dirty (a product_config change: every account of the partition);
     add the accounts whose next_action_at has come (the timer index) and, with the breaker
     closed, those withheld while it was open;
  5. evaluate them at now (projections/plan.evaluate: fold -> true state -> corrections);
  6. unless the breaker (projections/follow/breaker.py) is or goes open, write the corrections
     through apply's protocol (intents, compare-and-set writes, settle: apply_batch) while the
     fence still holds the leases;
  7. upsert their true states into the generation's read_model_state and advance the partitions'
     positions, then commit; then relay the outbox.

A kill -9 anywhere: before 7 commits nothing of the projection moved, so the next holder re-reads
the same events and re-evaluates the same accounts; the legacy stores already hold what was
written (the audit says so, recovery settles what was in flight), so the fresh evaluation plans
nothing for it. A correction the follower wrote comes back through ingest as a changed row:
the account is re-evaluated, agrees, and nothing more is written.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

from domain.catalog import fold_catalog
from domain.events import CATALOG_STREAM, AccountEvent
from domain.owners import NO_OVERRIDES, Owners
from domain.partitions import partition_of
from domain.rules import Rules
from eventlog.kept_sessions import KeptStores
from eventlog.range_reads import catalog_events
from eventlog.stores import Connection, OperationalError, Stores
from eventlog.tail import new_events
from ingestion.legacy.schema import blocked_tables
from projections.apply.account_plans import AccountPlan
from projections.apply.protocol import APPLY_LOCK, ApplyResult, recover
from projections.apply.relay import RelayReport, relay
from projections.follow import breaker, leases, tracking
from projections.follow.evaluation import evaluate_accounts, read_step
from projections.follow.folds import KeptFolds
from projections.follow.streams import StreamCache
from projections.follow.writes import cause_times, write_plans
from projections.read_model import generations
from projections.read_model.tables import ensure_read_model

Clock = Callable[[], datetime]
WALL_CLOCK: Clock = partial(datetime.now, UTC)  # a follower's clock unless a test gives its own
log = logging.getLogger("recompute.follow")
# The streams of new events one step takes at most (tracking.first_streams): under a backlog a step of
# every dirty account (1,000 seen, 7 s on a loaded machine) outlasted a 3 s lease between two statements
# of its fence, was ended by idle_in_transaction_session_timeout and began again, bigger, for ever.
MAX_ACCOUNTS = 250
MIN_ACCOUNTS = 20


def next_bound(seconds_per_account: float | None, *, budget_s: float, last: int | None = None,
               floor: int = MIN_ACCOUNTS, ceiling: int = MAX_ACCOUNTS) -> int:
    """Pure: the streams the next step takes at most, so its evaluation and writes (the fence
    session idle between two statements meanwhile) last about `budget_s` at the time an account
    took lately, and at most twice the accounts of the last step (`last`): an account read cold
    (partitions just taken over, a restart) costs several times a warm one, which the time measured
    on warm steps does not tell. 250 at 2 ms an account was ~3 s on a loaded machine at 12 ms,
    the whole lease of a chaos run, and its steps were ended by the server again and again."""
    if last is not None:
        ceiling = min(ceiling, max(floor, 2 * last))
    if not seconds_per_account or seconds_per_account <= 0:
        return ceiling
    return max(min(floor, ceiling), min(ceiling, int(budget_s / seconds_per_account)))


def spans(partitions: list[int]) -> str:
    """Pure: sorted partition numbers as runs, e.g. [0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'."""
    runs: list[list[int]] = []
    for p in partitions:
        if runs and p == runs[-1][-1] + 1:
            runs[-1].append(p)
        else:
            runs.append([p])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else f"{r[0]}" for r in runs)


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class StepReport:
    partitions: int = 0
    events: int = 0  # new events of our partitions
    accounts: int = 0  # evaluated
    due: int = 0  # of them because their next_action_at came
    applied: int = 0
    stale: int = 0
    withheld: int = 0  # accounts whose corrections the open breaker kept back
    recovered: dict[str, int] = field(default_factory=dict)
    tripped: str | None = None  # the breaker opened in this step, why
    busy: bool = False  # an `apply` held the lock: nothing done
    more: bool = False  # the batch was full: more events wait
    relay: RelayReport | None = None
    switched: str | None = None  # the active generation changed (backfill --apply): what to
    marks: dict[str, float] = field(default_factory=dict)  # seconds from the step's start to each on_step label


class Follower:
    def __init__(self, stores: Stores, rules: Rules, *, owner: str | None = None, clock: Clock = WALL_CLOCK,
                 lease_s: float = 10.0, batch_events: int = 20_000, max_accounts: int = MAX_ACCOUNTS,
                 max_share: float = 0.10,
                 window_s: float = breaker.WINDOW_S, broker_url: str | None = None,
                 on_lag: Callable[[float], None] = lambda _: None,
                 on_step: Callable[[str], None] = lambda _: None,
                 after_commit: Callable[[StepReport], None] | None = None, owners: Owners = NO_OVERRIDES) -> None:
        self.stores = stores
        self.owners = owners  # who writes what (domain/owners.py): each correction's drift names its writer
        self.rules = rules
        self.owner = owner or new_owner()
        self.clock = clock
        self.lease_s = lease_s
        self.batch_events = batch_events
        self.max_accounts = max_accounts
        self.max_share = max_share
        self.window_s = window_s
        self.broker_url = broker_url
        self.on_lag = on_lag
        self.on_step = on_step
        self.after_commit = after_commit or self._relay
        self.held: dict[int, int] = {}
        self._taken: list[int] = []  # the partitions held, in the order it took them (leases.surplus)
        self._per_account: float | None = None  # seconds an account took in recent steps (next_bound)
        self._last_accounts: int | None = None  # accounts the last step evaluated (next_bound)
        self._breaker_open: bool | None = None  # as last seen: a line when it changes
        self._catalog: list[AccountEvent] | None = None  # the product_config stream, read again when it grows
        self._streams = StreamCache()  # the accounts' events as last read
        self._folds = KeptFolds()  # the accounts' folds as of the last step that evaluated them
        self._blocked: dict[str, str] = {}  # the legacy tables blocked by their schema, as last read
        self._withheld_by_block: set[str] = set()  # accounts with corrections a block withheld
        self._conn = self._connect()
        # its reads of the legacy stores, schemas, parked rows and audit, and its writes and their
        # audit: sessions kept across steps
        self._sessions = KeptStores.keeping(stores, idle_in_transaction_timeout=f"{int(lease_s * 1000)}ms")
        ensure_read_model(self._conn)
        tracking.ensure_tracking(self._conn)
        self.generation: generations.Generation
        self.generation, self.created_generation = generations.active_or_new(self._conn, rules, clock())
        leases.ensure_leases(self._conn, self.generation.partitions)
        held, gone = leases.adopt(self._conn, self.owner, self.lease_s)
        if gone:  # a follower killed (and this one, likely, its restart): its partitions now, not a lease later
            log.info("taking over at once the partitions of %s: no session of theirs is left", ", ".join(gone),
                     extra={"owners": ", ".join(gone), "owner": self.owner})
        self._hold(held)

    def _connect(self) -> Connection:
        """Its session cannot outlive its lease: a follower frozen (SIGSTOP, a stalled VM) inside a step,
        idle in the fence transaction with its lease rows locked, is ended by the server after a lease,
        its locks freed, so another follower claims its partitions once they expire; a statement
        blocked as long is ended too. Woken, it finds its session gone and its fence lost."""
        ms = f"{int(self.lease_s * 1000)}ms"
        conn = self.stores.connect(purpose=leases.session_name(self.owner), autocommit=True,
                                   idle_in_transaction_timeout=ms, statement_timeout=ms)
        leases.hold_owner_lock(conn, self.owner)  # while this session lasts, no starting follower adopts ours
        return conn

    @property
    def session_lost(self) -> bool:
        """Its event-store session ended under it (the next step opens a new one)."""
        return self._conn.broken or self._conn.closed

    def close(self, *, release: bool = True) -> None:
        if release and not self.session_lost:
            try:
                leases.release(self._conn, self.owner)
            except OperationalError:
                pass  # the server went away: the leases expire instead
        self._conn.close()
        self.drop_sessions()

    def drop_sessions(self) -> None:
        """Closes the sessions it keeps across steps (a server went away: the next step opens new ones)."""
        self._sessions.drop()

    def take_share(self, *, within_s: float | None = None, poll_s: float = 0.2) -> None:
        """Claims until this follower holds its fair share and every other partition has a holder
        seen renewing since (a live follower does within a third of its lease; a dead one's lease
        and membership expire, and they are claimed), or `within_s` (default: the lease and a bit)
        passed: what a one-pass `project` does first, so it neither skips a dead follower's
        partitions, even one killed a moment ago, nor takes a live one's."""
        deadline = time.monotonic() + (self.lease_s * 1.5 + 1 if within_s is None else within_s)
        since = leases.heartbeats(self._conn)
        while True:
            self._hold(leases.balance(self._conn, self.owner, self.lease_s, self._taken))
            if leases.settled(self._conn, self.owner, since) or time.monotonic() >= deadline:
                return
            time.sleep(poll_s)

    def step(self) -> StepReport:
        report = StepReport()
        started = time.perf_counter()

        def mark(label: str) -> None:
            report.marks[label] = time.perf_counter() - started
            self.on_step(label)

        if self.session_lost:  # the server went away and came back: a new session
            self._conn = self._connect()
        report.switched = self._follow_active()
        self._hold(leases.balance(self._conn, self.owner, self.lease_s, self._taken))
        if not self.held:
            return report
        now = self.clock()
        conn = self._conn
        with conn.transaction():
            if not conn.execute("SELECT pg_try_advisory_xact_lock_shared(%s)", (APPLY_LOCK,)).fetchone()[0]:  # type: ignore[index]  # always one row
                report.busy = True
                return report
            held = self._hold(leases.fence(conn, self.owner, self.held, self.lease_s))
            report.partitions = len(held)
            if not held:
                return report
            mark("fenced")
            count = self.generation.partitions

            def ours(account_id: str) -> bool:
                return partition_of(account_id, count) in held

            if conn.execute("SELECT EXISTS (SELECT FROM correction_audit WHERE status = 'pending')").fetchone()[0]:  # type: ignore[index]  # always one row
                recovered = ApplyResult(run_id="", as_of=now, rules_version=self.rules.version)
                recover(self.stores, recovered, only=ours)
                report.recovered = dict(recovered.recovered)
            gen = self.generation.id
            parts = sorted(held)
            pos = tracking.positions(conn, gen, parts)
            read = new_events(conn, min(pos.values()), self.batch_events)
            bound = next_bound(self._per_account, budget_s=self.lease_s / 3, last=self._last_accounts,
                               ceiling=self.max_accounts)
            rows = tracking.first_streams(read, bound, lambda stream: stream == CATALOG_STREAM or ours(stream))
            head = rows[-1][0] if rows else min(pos.values())
            report.more = len(read) == self.batch_events or len(rows) < len(read)
            dirty, catalog_parts, report.events = tracking.mark_dirty(rows, pos, count)
            if catalog_parts or self._catalog is None:
                self._catalog = catalog_events(self.stores)
            due = tracking.due_accounts(conn, gen, parts, now)
            report.due = len(due.keys() - dirty)
            gate = breaker.read_breaker(conn)
            self._say_breaker(gate)
            accounts = dirty | due.keys()
            if catalog_parts:
                accounts |= set(tracking.accounts_of(conn, gen, sorted(catalog_parts)))
            approved: set[str] = set()  # withheld while open, then resumed by an operator: not counted again
            if not gate.open:
                approved = set(tracking.withheld(conn, gen, parts))
                accounts |= approved
            blocked = self._blocks(accounts, ours)
            mark("read")
            states, plans = self._evaluate(sorted(accounts), now, blocked)
            report.accounts = len(states)
            mark("evaluated")
            withheld: set[str] = set()
            if plans:
                if not gate.open:
                    allowed = breaker.limit(self._accounts_known(conn), self.max_share)
                    done = breaker.corrected_in_window(conn, now, self.window_s)
                    batch = {p.state.account_id or "" for p in plans} - approved
                    if breaker.trips(done, batch, allowed):
                        report.tripped = (f"{len(done | batch)} accounts would be corrected within "
                                          f"{self.window_s / 3600:g} h, more than {allowed} "
                                          f"({self.max_share:g} of the accounts)")
                        breaker.trip(conn, report.tripped)
                        gate = breaker.Breaker(open=True, reason=report.tripped)
                        self._say_breaker(gate)
                if gate.open:
                    withheld = {p.state.account_id or "" for p in plans}
                else:
                    causes = cause_times(conn, [p.state.account_id or "" for p in plans], min(pos.values()), head, due)
                    # the audit of what it writes (intents, write xids, settle: apply's protocol, each
                    # its own transaction beside the fence's) on one autocommit event-store session
                    with self._sessions.connect(purpose="follow writes", autocommit=True) as audit:
                        result, committed = write_plans(self._sessions, self.rules, self.owner, plans, now, mark,
                                                         causes, kept=audit)
                    report.applied, report.stale = result.count("applied"), result.count("stale")
                    for account_id in {c.account_id for c, status in result.done if status == "applied"}:
                        if account_id in causes:
                            self.on_lag(max(0.0, (committed - causes[account_id]).total_seconds()))
                    if approved & {p.state.account_id for p in plans}:
                        breaker.restart_window(conn)  # what the operator let through counts for no window
                    mark("written")
            report.withheld = len(withheld)
            tracking.upsert_states(conn, gen, states)
            tracking.clear_timers(conn, gen, due.keys() - {s.account_id for s in states})  # none to re-arm
            tracking.set_withheld(conn, gen, [(s.account_id, s.partition) for s in states], withheld)
            tracking.advance(conn, gen, {p: max(pos[p], head) for p in parts})
            mark("committing")
        mark("committed")
        self._measure(report)
        self.after_commit(report)
        report.marks["after"] = time.perf_counter() - started
        return report

    def _hold(self, held: dict[int, int]) -> dict[int, int]:
        """What it holds now; a line when that changed (one per change, with the partitions)."""
        taken, lost = sorted(held.keys() - self.held.keys()), sorted(self.held.keys() - held.keys())
        if taken:
            log.info("lease taken: partitions %s", spans(taken), extra={"partitions": spans(taken), "owner": self.owner})
        if lost:
            log.warning("lease lost or given up: partitions %s", spans(lost),
                        extra={"partitions": spans(lost), "owner": self.owner})
        self._taken = [p for p in self._taken if p in held] + taken
        self.held = held
        return held

    def _measure(self, report: StepReport) -> None:
        """The seconds an account took from the step's reads to its commit: a slower step is taken
        at once, a faster one halfway (steps of a few accounts say little: they are left out)."""
        self._last_accounts = report.accounts
        if report.accounts >= MIN_ACCOUNTS // 2:
            took = (report.marks["committed"] - report.marks.get("read", 0.0)) / report.accounts
            known = self._per_account
            self._per_account = took if known is None or took > known else (known + took) / 2

    def _say_breaker(self, gate: breaker.Breaker) -> None:
        if gate.open == self._breaker_open:
            return
        if gate.open:
            log.warning("circuit breaker opened: %s; projecting goes on, writing waits for `recompute project "
                        "--resume`", gate.reason or "")
        elif self._breaker_open is not None:
            log.info("circuit breaker resumed: writing again (the withheld accounts are evaluated again)")
        self._breaker_open = gate.open

    def _relay(self, report: StepReport) -> None:
        """By default the outbox is relayed after a step that applied something (`project --follow`
        relays in a thread of its own instead, so a slow broker never holds the next batch)."""
        if self.broker_url and report.applied:
            report.relay = relay(stores=self.stores, broker_url=self.broker_url)

    def _follow_active(self) -> str | None:
        """A `backfill --apply` switched the active generation: follow it, under its rules."""
        found = generations.active(self._conn)
        if found is None or found.id == self.generation.id:
            return None
        self.generation = found
        if found.rules_digest != self.rules.digest:
            self.rules = found.rules
        leases.ensure_leases(self._conn, found.partitions)
        return f"generation {found.id}, rules {found.rules_version} (digest {found.rules_digest})"

    def _blocks(self, accounts: set[str], ours: Callable[[str], bool]) -> dict[str, str]:
        """The tables blocked now (ingestion/legacy/schema.py; read every step that has accounts: a
        table blocked a second ago must already be withheld), said in the log when that changes; once
        one is lifted, the accounts whose corrections a block withheld are evaluated again (added to
        `accounts`), so they converge though nothing of theirs changed meanwhile."""
        if not accounts and not self._withheld_by_block:
            return self._blocked
        blocked = blocked_tables(self._sessions)
        for table in sorted(blocked.keys() - self._blocked.keys()):
            log.warning("%s blocked: %s; its rows are not corrected until its schema matches again", table,
                        blocked[table])
        if lifted := sorted(self._blocked.keys() - blocked.keys()):
            log.warning("%s unblocked: %d accounts whose corrections it withheld are evaluated again",
                        ", ".join(lifted), len(self._withheld_by_block))
            accounts |= {a for a in self._withheld_by_block if ours(a)}
            self._withheld_by_block = set()
        self._blocked = blocked
        return blocked

    def _evaluate(self, accounts: list[str], now: datetime,
                  blocked: Mapping[str, str]) -> tuple[list[tracking.StateRow], list[AccountPlan]]:
        if not accounts:
            return [], []
        catalog = fold_catalog(self._catalog or [], as_of=now)
        count = self.generation.partitions
        step = read_step(self._sessions, self._conn, self._streams, accounts, blocked, self._folds)
        evaluated, plans = evaluate_accounts(self._sessions, step, self.rules, now, catalog, accounts, self.owners)
        self._withheld_by_block |= step.withheld_by_block
        states = []
        for state, _ in evaluated:
            account_id = state.account_id or ""
            events = step.events[account_id]
            states.append(tracking.StateRow(account_id, partition_of(account_id, count),
                                            state.model_dump(mode="json", exclude={"because"}),
                                            tracking.wake_at(state.next_action_at, (e.source_time for e in events),
                                                             now),
                                            events[-1].originator_version, now))
        return states, plans

    def _accounts_known(self, conn: Connection) -> int:
        return conn.execute("SELECT count(*) FROM ingest_row_digest WHERE store = 'cf_prod' AND tbl = 'accounts' "  # type: ignore[index,no-any-return]  # always one row
                            "AND stream IS NOT NULL").fetchone()[0]

    def seconds_to_next_due(self) -> float | None:
        """Until the earliest next_action_at in our partitions (None: no timer set)."""
        if not self.held:
            return None
        at = tracking.earliest_due(self._conn, self.generation.id, sorted(self.held))
        return None if at is None else max(0.0, (at - self.clock()).total_seconds())
