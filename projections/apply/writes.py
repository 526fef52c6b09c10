"""Writing one legacy store, and finding out what a killed run did to it.

    write_store(stores, run_id, intents, ...) -> [Outcome]  one transaction, compare-and-set per intent
    resolve_pending(stores, store, run_ids, intents) -> [Outcome]  after a crash: applied, stale or abandoned
    recovered(intents, committed, held, at) -> [Outcome] the pure decision resolve_pending makes

Before its first write, the store's transaction id is recorded with the intents it writes
(correction_audit.write_xid, committed in the event store): that is what tells "written by us" from
"already so". A row that holds what an intent writes proves nothing by itself (the intent's `from`
may have been read from a column that was not there, and the row held the `to` all along).

Every writing transaction of a run carries `application_name = 'recompute apply <run id>'` (set
LOCAL as its first statement, so it is the run's name exactly while the transaction is open, and a
session kept across runs, a follower's, never carries a finished run's name), so recovery can
wait until no session of a dead run is left on the store's server (a backend whose client was
killed ends its transaction, committed or not, within moments) before it looks: it never mistakes
a commit still in flight for "not applied". It writes nothing: an intent whose transaction
committed and whose row holds what it writes was applied (one that committed without it: stale);
one whose transaction never began or did not commit is abandoned, for the fresh plan to redo or drop.

A write the store refuses because the table is not the one recompute reads (a column renamed,
dropped or of another type since the plan: `SCHEMA_ERRORS`) writes nothing of that store: its
intents are stale, and the next plan sees the table blocked (ingestion/legacy/schema.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from datetime import UTC, datetime

import psycopg
from psycopg import errors

from eventlog.stores import Connection, Stores
from projections.apply.audit import Intent, Outcome, record_write_xid
from projections.apply.cas_sql import probe, statement

SESSION_WAIT_S = 30.0
LOCK_TIMEOUT = "30s"  # a legacy write waits no longer for a row another session holds
# The store refused a statement because the table is not shaped as the catalogue says.
SCHEMA_ERRORS = (errors.UndefinedColumn, errors.UndefinedTable, errors.UndefinedFunction, errors.DatatypeMismatch,
                 errors.InvalidTextRepresentation, errors.CannotCoerce)
log = logging.getLogger("recompute.apply")


class EarlierRunStillWriting(RuntimeError):
    """A session of an interrupted run is still open on a legacy store."""


WRITES = "apply writes"  # a writing session's purpose; its transaction carries the run's name (session_name)


def session_name(run_id: str) -> str:
    return f"recompute apply {run_id}"


def write_store(stores: Stores, run_id: str, intents: Sequence[Intent],
                on_step: Callable[[str], None] = lambda _: None, *, kept: Connection | None = None) -> list[Outcome]:
    """`kept`: an autocommit event-store session to record the xid on (else one is opened for it)."""
    store = intents[0].store
    with stores.connect(store, purpose=WRITES, lock_timeout=LOCK_TIMEOUT) as conn:
        try:
            with conn.transaction():
                xid = conn.execute("SELECT pg_current_xact_id()::text::bigint, set_config('application_name', %s, true)",  # type: ignore[index]  # always one row
                                   (session_name(run_id),)).fetchone()[0]
                with stores.connect(purpose="apply", autocommit=True) if kept is None else nullcontext(kept) as es:
                    record_write_xid(es, intents, xid)
                on_step(f"began:{store}")
                with conn.pipeline():  # the statements go out without a round trip each (1 ms a write saved)
                    cursors = []
                    rendered: dict[int, tuple[object, bytes]] = {}  # a shape's text, once (it holds the shape)
                    for intent in intents:
                        query, params = statement(intent.correction, intent.sets)
                        text = rendered.get(id(query)) or rendered.setdefault(id(query),
                                                                              (query, query.as_bytes(conn)))
                        cursors.append(conn.execute(text[1], params))
                        on_step(f"wrote:{store}")
                statuses = ["applied" if cursor.rowcount == 1 else "stale" for cursor in cursors]
                on_step(f"committing:{store}")
        except SCHEMA_ERRORS as error:
            log.warning("%s: nothing written, %d corrections stale: %s (is a table not the one recompute reads?)",
                        store, len(intents), " ".join(str(error).split()))
            statuses = ["stale"] * len(intents)
        at = datetime.now(UTC)
    return [Outcome(i.audit_id, s, at) for i, s in zip(intents, statuses, strict=True)]


def resolve_pending(stores: Stores, store: str, run_ids: Sequence[str], intents: Sequence[Intent]) -> list[Outcome]:
    with stores.connect(store, purpose="apply-recovery", lock_timeout=LOCK_TIMEOUT, autocommit=True) as conn:
        _wait_for_sessions_to_end(conn, [session_name(r) for r in run_ids])
        status: dict[int, str | None] = {}
        for xid in {i.write_xid for i in intents if i.write_xid is not None}:
            status[xid] = conn.execute("SELECT pg_xact_status(%s::text::xid8)", (str(xid),)).fetchone()[0]  # type: ignore[index]  # always one row
        committed = [i.write_xid is not None and status[i.write_xid] == "committed" for i in intents]
        held = [c and _holds(conn, i) for c, i in zip(committed, intents, strict=True)]
    return recovered(intents, committed, held, datetime.now(UTC))


def _holds(conn: psycopg.Connection, intent: Intent) -> bool:
    try:
        return conn.execute(*probe(intent.correction)).fetchone() is not None
    except SCHEMA_ERRORS:  # the column is not there (now): it holds nothing we wrote
        return False


def recovered(intents: Sequence[Intent], committed: Sequence[bool], held: Sequence[bool],
              at: datetime) -> list[Outcome]:
    """Pure: what became of an interrupted run's pending intents, given whether each one's write
    transaction committed and whether its row holds what the intent writes: 'applied' if both,
    'stale' if it committed without (its compare-and-set found the row changed), else 'abandoned'
    (nothing was written; never re-executed). A row that holds the value is no proof alone."""
    return [Outcome(i.audit_id, ("applied" if h else "stale") if c else "abandoned", at)
            for i, c, h in zip(intents, committed, held, strict=True)]


def _wait_for_sessions_to_end(conn: psycopg.Connection, names: list[str]) -> None:
    deadline = time.monotonic() + SESSION_WAIT_S
    while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = ANY(%s)",  # type: ignore[index]  # always one row
                       (names,)).fetchone()[0]:
        if time.monotonic() > deadline:
            raise EarlierRunStillWriting(
                f"a session of an interrupted apply ({', '.join(names)}) is still open after {SESSION_WAIT_S:.0f}s")
        time.sleep(0.05)
