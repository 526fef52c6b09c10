"""The audit of corrections and the outbox, in the event store database (eventlog/own_tables.py).

    record(conn, run, intents)      step 1: audit rows 'pending' + their outbox events 'held', one transaction
    settle(conn, outcomes)          step 3: audit rows 'applied' | 'stale' | 'abandoned'; an event with an
                                    applied correction becomes 'ready' (its body fixed), one with none 'void'
    finished_events(rows)           pure: which held events become 'ready' (with their body) or 'void'
    pending(conn)                   intents of earlier runs that were never settled (a run was killed)
    account_audit(conn, account)    one account's applied corrections: for its drift and as `explain` shows them

The caller owns the transaction: `record` and `settle` each run inside one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from domain.diff import Correction, Drift
from domain.drift import PastCorrection
from domain.outgoing import event_body
from eventlog.stores import Connection, Stores
from eventlog.tables_present import has_tables


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    rules_version: str
    as_of: datetime
    rules_digest: str | None = None  # Rules.digest
    plan_digest: str | None = None  # `apply --plan`: the saved plan's digest


@dataclass(frozen=True)
class OutgoingEvent:
    event_id: str
    account_id: str
    type: str
    subject: str


@dataclass(frozen=True)
class Intent:
    """A correction the run means to make, with what it writes besides and why."""

    correction: Correction
    sets: dict[str, Any]
    causes: tuple[str, ...]
    event_id: str
    audit_id: int = 0
    write_xid: int | None = None  # the legacy transaction that writes it (None: no write began)

    @property
    def store(self) -> str:
        return self.correction.table.split(".", 1)[0]


@dataclass(frozen=True)
class Outcome:
    audit_id: int
    status: str  # applied | stale | abandoned
    at: datetime


def record(conn: psycopg.Connection, run: RunInfo, intents: Sequence[Intent],
           events: Sequence[OutgoingEvent]) -> list[Intent]:
    """Writes the intents and their held events; returns the intents with their audit ids."""
    ids = [row[0] for row in conn.execute(
        "SELECT nextval(pg_get_serial_sequence('correction_audit', 'id')) FROM generate_series(1, %s)",
        (len(intents),))]
    with conn.cursor() as cur:  # COPY: one stream per table, not a statement per row
        with cur.copy("COPY correction_audit (id, run_id, account_id, store, tbl, op, key, col, from_value, "
                      "to_value, sets, rules_version, rules_digest, as_of, causes, event_id, status, plan_digest, "
                      "drift) "
                      "FROM STDIN") as copy:
            for audit_id, i in zip(ids, intents, strict=True):
                drift = i.correction.drift
                copy.write_row((audit_id, run.run_id, i.correction.account_id, i.store, i.correction.table,
                                i.correction.op, Jsonb(i.correction.key), i.correction.column,
                                Jsonb(i.correction.from_), Jsonb(i.correction.to), Jsonb(i.sets), run.rules_version,
                                run.rules_digest, run.as_of, Jsonb(list(i.causes)), i.event_id, "pending",
                                run.plan_digest, None if drift is None else Jsonb(drift.as_json())))
        with cur.copy("COPY outbox_event (event_id, run_id, account_id, type, subject, status) FROM STDIN") as copy:
            for e in events:
                copy.write_row((e.event_id, run.run_id, e.account_id, e.type, e.subject, "held"))
    return [replace(i, audit_id=audit_id) for audit_id, i in zip(ids, intents, strict=True)]


def settle(conn: psycopg.Connection, outcomes: Sequence[Outcome]) -> dict[str, int]:
    """Records what became of intents and finishes their events; returns {'ready': n, 'void': m}.
    (Its arrays go in binary, %b: psycopg quotes each element of a text array with a regular
    expression, and the events' bodies made that a tenth of a follower's step.)"""
    if not outcomes:
        return {"ready": 0, "void": 0}
    conn.execute(
        "UPDATE correction_audit a SET status = u.status, settled_at = u.at "
        "FROM unnest(%b::bigint[], %b::text[], %b::timestamptz[]) AS u(id, status, at) "
        "WHERE a.id = u.id AND a.status = 'pending'",
        ([o.audit_id for o in outcomes], [o.status for o in outcomes], [o.at for o in outcomes]))
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT a.*, e.type, e.subject, r.as_of AS run_as_of FROM correction_audit a "
            "JOIN outbox_event e USING (event_id) JOIN apply_run r ON r.run_id = a.run_id "
            "WHERE a.event_id IN (SELECT event_id FROM correction_audit WHERE id = ANY(%b::bigint[])) "
            "AND e.status = 'held' ORDER BY a.id", ([o.audit_id for o in outcomes],)).fetchall()
    counts = {"ready": 0, "void": 0}
    finished = finished_events(rows)
    for _, status, _ in finished:
        counts[status] += 1
    if finished:  # one statement for the lot
        conn.execute(
            "UPDATE outbox_event e SET status = u.status, "
            "body = CASE WHEN u.status = 'ready' THEN u.body::jsonb ELSE e.body END, "
            "ready_at = CASE WHEN u.status = 'ready' THEN now() ELSE e.ready_at END "
            "FROM unnest(%b::uuid[], %b::text[], %b::text[]) AS u(event_id, status, body) "
            "WHERE e.event_id = u.event_id",
            ([str(event_id) for event_id, _, _ in finished], [status for _, status, _ in finished],
             [None if body is None else json.dumps(body) for _, _, body in finished]))
    return counts


def finished_events(rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, str, dict[str, Any] | None]]:
    """Pure: which held events the audit rows let `settle` finish, as (event_id, status, body).

    `rows` are the audit rows of held events in id order (with the event's type and subject and
    the run's as_of). An event with a member still 'pending' (another store's part) is not
    finished yet; one with an applied member becomes 'ready', its body telling what was applied;
    one with none 'void' (no body)."""
    by_event: dict[Any, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_event.setdefault(row["event_id"], []).append(row)
    finished: list[tuple[Any, str, dict[str, Any] | None]] = []
    for event_id, members in by_event.items():
        if any(m["status"] == "pending" for m in members):
            continue  # another store's part is not settled yet
        applied = [m for m in members if m["status"] == "applied"]
        if not applied:
            finished.append((event_id, "void", None))
            continue
        first = members[0]
        finished.append((event_id, "ready", event_body(
            event_id=str(event_id), type=first["type"], account_id=first["account_id"], subject=first["subject"],
            rules_version=first["rules_version"], rules_digest=first["rules_digest"], run_id=str(first["run_id"]),
            as_of=first["run_as_of"],
            occurred_at=max(m["settled_at"] for m in applied), plan_digest=first.get("plan_digest"),
            applied=[(correction_of(m), m["causes"]) for m in applied])))
    return finished


def pending(conn: psycopg.Connection) -> list[tuple[Intent, str]]:
    """Unsettled intents of earlier runs, with the run that recorded each."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("SELECT * FROM correction_audit WHERE status = 'pending' ORDER BY id").fetchall()
    return [(Intent(correction=correction_of(r), sets=r["sets"], causes=tuple(r["causes"]),
                    event_id=str(r["event_id"]), audit_id=r["id"], write_xid=r.get("write_xid")), str(r["run_id"]))
            for r in rows]


def record_write_xid(conn: psycopg.Connection, intents: Sequence[Intent], xid: int) -> None:
    """Before the legacy transaction `xid` writes any of `intents`: which transaction that is (committed
    at once, in its own transaction), so recovery can tell "written by us" from "already so"."""
    conn.execute("UPDATE correction_audit SET write_xid = %s WHERE id = ANY(%s)", (xid, [i.audit_id for i in intents]))


def correction_of(row: Mapping[str, Any]) -> Correction:
    drift = row.get("drift")
    return Correction(account_id=row["account_id"], table=row["tbl"], op=row["op"], key=row["key"],
                      column=row["col"], from_=row["from_value"], to=row["to_value"],
                      drift=Drift.model_validate(drift) if drift else None)


def applied_corrections(stores: Stores, accounts: Sequence[str], *, like: Sequence[Correction] | None = None,
                        until: datetime | None = None) -> dict[str, list[PastCorrection]]:
    """The accounts' applied corrections (what domain/drift.py counts rewrites against), by account;
    `like`: only those of the same account, table, op and column as one of them, and `until`: only
    those applied by then (all that drift_origins(like, at=until) reads of them: it matches each
    correction's row too, and leaves out what was applied after T; the rest grows with the audit)."""
    found: dict[str, list[PastCorrection]] = {}
    with stores.connect(purpose="audit") as conn:
        if not accounts or not has_tables(conn, "correction_audit"):
            return found
        query = ("SELECT account_id, tbl, op, key, col, to_value, settled_at FROM correction_audit "
                 "WHERE account_id = ANY(%b) AND status = 'applied' AND (%b::timestamptz IS NULL OR settled_at <= %b)")
        params: list[Any] = [list(accounts), until, until]
        if like is not None:  # the targets' (account, table, op, column), each once
            query += (" AND (account_id, tbl, op, coalesce(col, '')) IN "
                      "(SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[]))")
            params += [list(column) for column in zip(*sorted({(c.account_id, c.table, c.op, c.column or "")
                                                               for c in like}), strict=True)] or [[], [], [], []]
        rows = conn.execute(query + " ORDER BY settled_at, id", params)
        for account_id, table, op, key, column, to, at in rows:
            found.setdefault(account_id, []).append(PastCorrection(table, op, key, column, to, at))
    return found


def account_audit(conn: Connection, account_id: str) -> tuple[list[PastCorrection], list[dict[str, Any]]]:
    """The account's applied corrections, oldest first, in one read on the caller's connection (to
    the event store): as domain/drift.py counts rewrites against them (`applied_corrections`'), and
    as `explain` shows them."""
    with conn.cursor(row_factory=dict_row) as cur:
        if not has_tables(conn, "correction_audit"):
            return [], []
        rows = cur.execute(
            "SELECT * FROM correction_audit WHERE account_id = %s AND status = 'applied' ORDER BY settled_at, id",
            (account_id,)).fetchall()
    return ([PastCorrection(r["tbl"], r["op"], r["key"], r["col"], r["to_value"], r["settled_at"]) for r in rows],
            [{**correction_of(r).as_json(), "applied_at": r["settled_at"].isoformat(), "run_id": str(r["run_id"]),
              "rules_version": r["rules_version"], "rules_digest": r["rules_digest"], "as_of": r["as_of"].isoformat(),
              "causes": r["causes"], "sets": r["sets"], "event_id": str(r["event_id"]), **_plan_digest(r)}
             for r in rows])


def _plan_digest(row: Mapping[str, Any]) -> dict[str, str]:
    """A correction from a saved plan names it; one from apply's own plan carries nothing more."""
    return {"plan_digest": row["plan_digest"]} if row.get("plan_digest") else {}
