"""What a change of rules changes in an account's true state (pure): `backfill`'s `against_active`.

cli.md: an account appears exactly when some column of rules-v1 §3 would hold a different value.
The rules decide only the dunning side and what follows from it; of §3's columns those are
`billing_prod.dunning.stage` and `subs_dunning.stage` (field `stage`), `subs_dunning.attempt_count`
(`attempt_count`, the failed attempts) and `subs_dunning.next_action_at` (`next_action_at`),
`subs_account.bad_debt`/`delinquent`, `cf_prod.accounts.status` (`status`) and
`cf_prod.entitlements.enabled` (`entitlements.<feature>`). Invoices, the subscription and the
customer do not depend on the rules. So a difference in any of these fields is a different column
value, and one that only moves `next_action_at` is listed too (it is a column of `subs_dunning`).
"""

from __future__ import annotations

from typing import Any

from domain.state import TrueState
from domain.truth import RuledFields

_FIELDS = (("stage", "stage"), ("bad_debt", "bad_debt"), ("delinquent", "delinquent"), ("status", "status"),
           ("attempt_count", "failed_attempts"), ("next_action_at", "next_action_at"))


def state_changes(before: TrueState | RuledFields, after: TrueState) -> list[dict[str, Any]]:
    """The fields that differ, in cli.md's shape: {"account_id", "field", "from", "to"}. `before`
    may be only the fields the rules decide (domain/truth.ruled_fields: backfill's state under the
    active rules), the account being `after`'s."""
    account = after.account_id
    found = [{"account_id": account, "field": name, "from": _json(getattr(before, attr)),
              "to": _json(getattr(after, attr))}
             for name, attr in _FIELDS if getattr(before, attr) != getattr(after, attr)]
    for feature in sorted(before.entitlements.keys() | after.entitlements.keys()):
        old, new = before.entitlements.get(feature), after.entitlements.get(feature)
        if old != new:
            found.append({"account_id": account, "field": f"entitlements.{feature}", "from": old, "to": new})
    return found


def _json(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value
