"""Plan a chosen set of accounts again, keeping their true states: what `apply` writes from.

`plan` (projections/planner.py) streams every account and keeps only corrections. `apply` then
needs, for the accounts it will change, the true state too (stage_since, the entitlement source,
the `because` refs that justify each correction), and the corrections as of the moment it writes.
So each batch of accounts is read again: its events (`originator_id = ANY`) and its current
legacy rows (one scan per table), through the same pure fold -> true_state -> corrections_for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson
import psycopg
from psycopg import sql

from domain.catalog import Catalog
from domain.corrections import Correction, corrections_for
from domain.events import AccountEvent
from domain.fold import fold
from domain.rules import Rules
from domain.state import TrueState
from domain.truth import true_state
from projections.reading import COMPARED_TABLES
from recompute.eventlog import EVENTS_TABLE, decode_event


@dataclass(frozen=True)
class AccountPlan:
    state: TrueState
    corrections: list[Correction]


def replan(dsns: Mapping[str, str], rules: Rules, as_of: datetime, catalog: Catalog,
           accounts: Sequence[str]) -> list[AccountPlan]:
    """The true state and corrections of each of `accounts` that exists, in the order given."""
    events = _events(dsns["eventstore"], accounts)
    rows: dict[str, dict[str, list[dict]]] = {}
    for store, tables in COMPARED_TABLES.items():
        _legacy_rows(dsns[store], store, tables, accounts, rows)
    found = []
    for account_id in accounts:
        state = true_state(fold(events.get(account_id, []), as_of=as_of), catalog, rules, as_of)
        if state.account_exists:
            found.append(AccountPlan(state, corrections_for(state, rows.get(account_id, {}))))
    return found


def _events(eventstore_dsn: str, accounts: Sequence[str]) -> dict[str, list[AccountEvent]]:
    found: dict[str, list[AccountEvent]] = {}
    with psycopg.connect(eventstore_dsn) as conn, conn.cursor(binary=True) as cur:
        cur.execute(sql.SQL("SELECT originator_id, originator_version, topic, state FROM {} "
                            "WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version")
                    .format(sql.Identifier(EVENTS_TABLE)), (list(accounts),))
        for originator_id, version, topic, state in cur:
            found.setdefault(originator_id, []).append(decode_event(topic, state, originator_id, version))
    return found


def _legacy_rows(dsn: str, store: str, tables: Sequence[str], accounts: Sequence[str],
                 into: dict[str, dict[str, list[dict]]]) -> None:
    with psycopg.connect(dsn, options="-c TimeZone=UTC") as conn, conn.transaction(), conn.cursor() as cur:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        for table in tables:
            cur.execute(sql.SQL("SELECT account_id, row_to_json(t)::text FROM {} t WHERE account_id = ANY(%s)")
                        .format(sql.Identifier(table)), (list(accounts),))
            for account_id, row in cur:
                into.setdefault(account_id, {}).setdefault(f"{store}.{table}", []).append(orjson.loads(row))
