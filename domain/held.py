"""Which legacy rows a plan must leave alone, and the corrections they withhold (pure).

    hold(state, catalog, parked, rows, corrections) -> (the corrections that touch no held row, held rows)

A row is *held* when recompute does not understand what it now says, so any correction would
overwrite something unread:
  - its latest version was parked at ingest (`parked`: e.g. an entitlement with source 'vip', a
    dunning stage 'Retrying'); the log still holds the version before, but the row no longer says
    that. It stays held until ingest records a version it understands.
  - it is a non-manual entitlement of an account whose plan (the one its status uses: `free` when
    suspended) is not in product_config as of T: "not in the catalog" would otherwise read as
    "includes nothing" and switch every feature off. Decided at plan time against the catalog as
    of T (product_config can change after the account row was ingested), not parked at ingest.
An account with held rows is still checked; only corrections of the held rows themselves are
withheld, matched by table and primary key. A held row stays held whatever T: it is about the row
as it now is. Stripe records hold nothing: what Stripe ingestion parks is an envelope it cannot
read, a type it does not record, or an object of no account (retried until recorded), never a
newer observation of an object the log then reads from an older one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from domain.catalog import Catalog
from domain.diff import WRITABLE, Correction, Row
from domain.facts import Frozen
from domain.state import TrueState

ENTITLEMENTS = "cf_prod.entitlements"


class HeldRow(Frozen):
    """A row no correction is planned for: `plan --json` "held", `explain` "held"."""

    account_id: str
    table: str  # "store.table"
    key: dict[str, Any]
    reason: str
    parked_at: datetime | None  # when ingest parked its latest version; None: held by the plan itself

    def as_json(self) -> dict[str, Any]:
        return {"account_id": self.account_id, "table": self.table, "key": self.key, "reason": self.reason,
                "parked_at": self.parked_at.isoformat() if self.parked_at else None}

    @property
    def where(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return row_identity(self.table, self.key)


class ParkedRecord(Frozen):
    """One record ingest parked (`parked_record`), as `explain` shows it."""

    source: str  # cf_prod | billing_prod | subs | stripe
    table: str  # "store.table"; for Stripe "stripe.<object type>", or "stripe.event" for an envelope
    key: dict[str, Any]
    reason: str
    record: Any  # the row or Stripe object as it came
    position: str
    parked_at: datetime
    held: bool  # the latest version of its row: no correction is planned for that row

    def as_json(self) -> dict[str, Any]:
        return {**self.model_dump(mode="json"), "parked_at": self.parked_at.isoformat()}

    def held_row(self, account_id: str) -> HeldRow | None:
        """The row of `account_id` it holds from correction, if any (only rows a correction can touch)."""
        if not self.held or self.table not in WRITABLE:
            return None
        return HeldRow(account_id=account_id, table=self.table, key=self.key, reason=self.reason,
                       parked_at=self.parked_at)


def row_identity(table: str, key: Mapping[str, Any] | None) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Table and key as comparable text: a key read back from JSON (7) and one from a row (7) match."""
    return table, tuple(sorted((column, str(value)) for column, value in (key or {}).items()))


def plan_not_in_catalog(state: TrueState, catalog: Catalog) -> str | None:
    """Why the account's entitlements cannot be decided as of T, or None when they can."""
    if not state.account_exists or state.status == "closed":
        return None  # closed: nothing is enabled whatever the plan says
    plan = "free" if state.status == "suspended" else state.plan
    if plan in catalog.plans:
        return None
    return f"plan {plan!r} is not in product_config"


def hold(state: TrueState, catalog: Catalog, parked: Sequence[HeldRow], rows: Mapping[str, Sequence[Row]],
         corrections: Sequence[Correction]) -> tuple[list[Correction], list[HeldRow]]:
    """The corrections that touch no held row, and the account's held rows: `parked` (its rows
    whose latest version was parked) and, when its plan is not in the catalog, every non-manual
    entitlement row in `rows` (and no entitlement is written, not even a missing row)."""
    reason = plan_not_in_catalog(state, catalog)
    if not parked and reason is None:
        return list(corrections), []
    held = {h.where: h for h in parked}
    if reason is not None and state.account_id is not None:
        for row in rows.get(ENTITLEMENTS, ()):
            if row.get("source") != "manual":
                key = {"account_id": state.account_id, "feature": row.get("feature")}
                held.setdefault(row_identity(ENTITLEMENTS, key), HeldRow(
                    account_id=state.account_id, table=ENTITLEMENTS, key=key, reason=reason, parked_at=None))
    kept = [c for c in corrections
            if row_identity(c.table, c.key) not in held and not (reason is not None and c.table == ENTITLEMENTS)]
    return kept, [held[where] for where in sorted(held)]


# The tables whose rows decide the true state (rules-v1 §1): while one is blocked, every account's
# truth may rest on rows not read, so nothing at all is corrected.
DECIDING = frozenset({"cf_prod.accounts", "cf_prod.product_config", "cf_prod.entitlements", "billing_prod.invoices",
                      "billing_prod.charges"})


def withhold_blocked(corrections: Sequence[Correction], held: Sequence[HeldRow],
                     blocked: Mapping[str, str]) -> tuple[list[Correction], list[HeldRow]]:
    """Pure: the corrections of no blocked table (none at all while a table deciding the truth is
    blocked), and the account's held rows with the withheld corrections' rows added, each with why.
    `blocked`: "store.table" -> why its schema is not the one read (ingestion/legacy/schema.py)."""
    if not blocked or not corrections:
        return list(corrections), list(held)
    deciding = sorted(DECIDING & blocked.keys())
    kept, withheld = [], {h.where: h for h in held}
    for c in corrections:
        table = c.table if c.table in blocked else deciding[0] if deciding else None
        if table is None:
            kept.append(c)
            continue
        why = f"{BLOCKED_PREFIX}{table} blocked: {blocked[table]}"
        withheld.setdefault(row_identity(c.table, c.key), HeldRow(account_id=c.account_id, table=c.table,
                                                                  key=c.key or {}, reason=why, parked_at=None))
    return kept, [withheld[where] for where in sorted(withheld)]


BLOCKED_PREFIX = "table "


def blocked_hold(row: HeldRow) -> bool:
    """Whether the row is held because a table is blocked (withhold_blocked), not for what it says."""
    return row.parked_at is None and row.reason.startswith(BLOCKED_PREFIX)
