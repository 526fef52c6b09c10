"""What the fleet holds for one account: its legacy rows and its Stripe side.

Legacy rows are plain dicts keyed by the column names of `legacy_schema.LEGACY_COLUMNS`, with
timezone-aware `datetime` values for timestamps. Stripe objects and events are the JSON dicts the
Stripe stand-in serves (unix-second timestamps).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Row = dict[str, Any]

# cf_prod.product_config: which features each plan includes (free's are included in every plan).
PLAN_FEATURES: dict[str, frozenset[str]] = {
    "free": frozenset({"basic_reports", "email_support"}),
    "starter": frozenset({"basic_reports", "email_support", "exports", "integrations"}),
    "pro": frozenset(
        {"basic_reports", "email_support", "exports", "integrations", "advanced_reports",
         "api_access", "priority_support"}
    ),
    "enterprise": frozenset(
        {"basic_reports", "email_support", "exports", "integrations", "advanced_reports",
         "api_access", "priority_support", "sso", "audit_log", "sandbox"}
    ),
}
ALL_FEATURES: tuple[str, ...] = tuple(sorted(set().union(*PLAN_FEATURES.values())))
PLAN_PRICE: dict[str, int] = {"free": 0, "starter": 2900, "pro": 9900, "enterprise": 49900}


def at(ts: int) -> datetime:
    """A unix-seconds instant as an aware UTC datetime (legacy rows hold these)."""
    return datetime.fromtimestamp(ts, UTC)


@dataclass
class AccountRecords:
    account_id: str
    # cf_prod
    account: Row
    entitlements: list[Row] = field(default_factory=list)
    # billing_prod
    invoices: list[Row] = field(default_factory=list)
    charges: list[Row] = field(default_factory=list)
    dunning: Row | None = None
    schedules: list[Row] = field(default_factory=list)
    # subs
    subs_account: Row = field(default_factory=dict)
    subs_customer: list[Row] = field(default_factory=list)  # in id order; `id` set by the fleet
    subs_dunning: Row | None = None
    subs_subscription: Row | None = None
    subs_invoice: list[Row] = field(default_factory=list)
    # Stripe: current objects (deleted customers as {"id", "object", "deleted": True}) and events
    customers: list[dict[str, Any]] = field(default_factory=list)
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    stripe_invoices: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
