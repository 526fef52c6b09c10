"""The product catalog: which features each plan includes (cf_prod.product_config, rules-v1 §1).

Catalog rows live on their own stream (`CATALOG_STREAM`) and hold since always; deleted rows
(`row is None`) leave the catalog. `fold_catalog(events) -> Catalog` is pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import cached_property

from pydantic import BaseModel, ConfigDict

from domain.events import AccountEvent, LegacyRowObserved


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    plans: dict[str, tuple[str, ...]] = {}  # plan -> its features, sorted

    @cached_property
    def features(self) -> tuple[str, ...]:
        """Every feature any plan includes: the universe of non-manual entitlements (made once: the
        truth asks it at every instant of the drift walk)."""
        return tuple(sorted({f for features in self.plans.values() for f in features}))

    def includes(self, plan: str | None, feature: str) -> bool:
        return plan is not None and feature in self.plans.get(plan, ())


def fold_catalog(events: Iterable[AccountEvent], *, as_of: datetime | None = None) -> Catalog:
    """The catalog from cf_prod.product_config observations (other events are ignored)."""
    chosen = [
        e for e in events
        if isinstance(e, LegacyRowObserved) and e.store == "cf_prod" and e.table == "product_config"
        and (as_of is None or e.source_time <= as_of)
    ]
    chosen.sort(key=lambda e: (e.source_time, e.originator_version))
    pairs: dict[tuple[str, str], bool] = {}
    for event in chosen:
        row = event.row if event.row is not None else event.key
        pair = (str(row.get("plan", event.key.get("plan"))), str(row.get("feature", event.key.get("feature"))))
        if event.row is None:
            pairs.pop(pair, None)
        else:
            pairs[pair] = True
    plans: dict[str, set[str]] = {}
    for plan, feature in pairs:
        plans.setdefault(plan, set()).add(feature)
    return Catalog(plans={plan: tuple(sorted(features)) for plan, features in sorted(plans.items())})
