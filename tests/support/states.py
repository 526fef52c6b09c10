"""A true state and the legacy rows that agree with it, with memorable defaults (for the diff and held rows)."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.state import TrueState

T = datetime(2026, 3, 1, tzinfo=UTC)
ACC = "acc_000042"


def a_state(**overrides) -> TrueState:
    """An active pro account in good standing, with Stripe customer cus_42 and no Stripe invoices."""
    values = dict(
        account_id=ACC, as_of=T, rules_version="v1", account_exists=True, plan="pro", status="active",
        stage="none", stage_since=None, days_overdue=0, failed_attempts=0, bad_debt=False, delinquent=False,
        next_action_at=None, past_due_invoices=(), entitlements={"api": True, "sso": True, "audit": False},
        manual_features=(), invoices={}, stripe_invoices={}, stripe_customer_id="cus_42", subscription=None,
        because={},
    )
    values.update(overrides)
    return TrueState(**values)


def agreeing_rows(**tables) -> dict[str, list[dict]]:
    """Legacy rows that agree with a_state(); pass a table to replace it."""
    rows = {
        "cf_prod.accounts": [{"account_id": ACC, "status": "active", "plan": "pro"}],
        "cf_prod.entitlements": [{"account_id": ACC, "feature": "api", "enabled": True, "source": "plan"},
                                 {"account_id": ACC, "feature": "sso", "enabled": True, "source": "plan"}],
        "subs.subs_account": [{"account_id": ACC, "bad_debt": False, "delinquent": False, "billing_email": "a@b"}],
        "subs.subs_customer": [{"id": 7, "account_id": ACC, "stripe_customer_id": "cus_42", "source": "setup"}],
    }
    rows.update({name.replace("__", "."): value for name, value in tables.items()})
    return rows
