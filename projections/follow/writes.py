"""What a follower writes for the accounts it corrects: an apply run of its own, through apply's
protocol (projections/apply/protocol.apply_batch: intents, compare-and-set writes, settle), and
when what caused each correction happened (for `recompute_correction_lag_seconds`, and kept in
`correction_audit.caused_at` for the report's correction lag).

    write_plans(stores, rules, owner, plans, now, on_step, causes, kept=) -> (ApplyResult, committed_at)
    cause_times(conn, accounts, after, upto, due) -> {account: instant}
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

import psycopg
from psycopg.types.json import Jsonb

from domain.rules import Rules
from eventlog.stores import Connection, Stores
from eventlog.tail import latest_source_times
from projections.apply.account_plans import AccountPlan
from projections.apply.audit import RunInfo
from projections.apply.protocol import ApplyResult, apply_batch, start_run


def write_plans(stores: Stores, rules: Rules, owner: str, plans: list[AccountPlan], now: datetime,
                on_step: Callable[[str], None], causes: Mapping[str, datetime] | None = None, *,
                kept: Connection) -> tuple[ApplyResult, datetime]:
    """One apply run (apply_run, marked as the follower's in follow_run) for `plans`, its accounts
    corrected recorded in follow_corrected (the breaker's window);
    the transaction recording its intents also records `causes` (account -> instant) in them. Its
    audit goes through `kept`, the follower's autocommit event-store session for writes."""
    run = RunInfo(str(uuid.uuid4()), rules.version, now, rules.digest)
    start_run(stores, run, rules, kept=kept, also=lambda c: c.execute(
        "INSERT INTO follow_run (run_id, owner) VALUES (%s, %s)", (run.run_id, owner)))
    result = ApplyResult(run_id=run.run_id, as_of=now, rules_version=run.rules_version,
                         rules_digest=run.rules_digest or "")
    apply_batch(stores, run, plans, result, on_step, kept=kept,
                also=lambda conn: _keep_causes(conn, run.run_id, causes or {}))
    committed = datetime.now(UTC)
    summary = {"kind": "follow", "owner": owner, "accounts_checked": len(plans),
               "accounts_disagreeing": len({c.account_id for c, s in result.done if s != "applied"}),
               "accounts_chosen": len(plans), "applied": result.count("applied"), "stale": result.count("stale"),
               "events": dict(result.events), "recovered": {}}
    corrected = sorted({c.account_id for c, status in result.done if status == "applied"})
    kept.execute("WITH corrected AS (INSERT INTO follow_corrected (account_id, corrected_at) "  # the breaker's window
                 "SELECT unnest(%b::text[]), now() ON CONFLICT (account_id) DO UPDATE SET corrected_at = "
                 "excluded.corrected_at) UPDATE apply_run SET finished_at = %s, summary = %s WHERE run_id = %s",
                 (corrected, committed, Jsonb(summary), run.run_id))
    return result, committed


def _keep_causes(conn: psycopg.Connection, run_id: str, causes: Mapping[str, datetime]) -> None:
    """correction_audit.caused_at of the run's intents, for the report's correction lag."""
    conn.execute("UPDATE correction_audit a SET caused_at = c.at FROM unnest(%b::text[], %b::timestamptz[]) "
                 "AS c(account_id, at) WHERE a.run_id = %s AND a.account_id = c.account_id",
                 (list(causes), list(causes.values()), run_id))


def cause_times(conn: psycopg.Connection, accounts: Sequence[str], after: int, upto: int,
                due: Mapping[str, datetime]) -> dict[str, datetime]:
    """Per account, when what caused its correction happened: the latest source time of its events
    with notification id in (after, upto], else the instant its timer came due."""
    found: dict[str, datetime] = {a: due[a] for a in accounts if a in due}
    found.update(latest_source_times(conn, accounts, after, upto))
    return found
