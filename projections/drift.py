"""Where the planned corrections' drift came from: the shell that feeds domain/drift.py.

Only the drifting accounts pay: their whole streams (the legacy rows' observations too, which
`plan` itself never decodes) and their applied corrections from the audit are read in one pass
each, and `drift_origins` says each correction's cause, since, owner, by and rewrites.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from domain.catalog import Catalog
from domain.diff import Correction
from domain.drift import drift_origins, with_drift
from domain.events import AccountEvent
from domain.owners import Owners
from domain.rules import Rules
from eventlog.account_range import AccountRange
from eventlog.range_reads import account_events
from eventlog.stores import Stores
from projections.apply.audit import applied_corrections


def attach_drift(stores: Stores, catalog: Catalog, rules: Rules, as_of: datetime,
                 corrections: Sequence[Correction], owners: Owners, *,
                 streams: Mapping[str, Sequence[AccountEvent]] | None = None) -> list[Correction]:
    """`corrections` (in their order), each with its drift; `streams`: the accounts' whole streams
    when the caller has read them already (a follower's step), else they are read here."""
    by_account: dict[str, list[Correction]] = {}
    for c in corrections:
        by_account.setdefault(c.account_id, []).append(c)
    if not by_account:
        return list(corrections)
    accounts = sorted(by_account)
    past = applied_corrections(stores, accounts)
    said: dict[str, list[Correction]] = {}
    read = ((a, streams[a]) for a in accounts if a in streams) if streams is not None else \
        account_events(stores, AccountRange(ids=tuple(accounts)))
    for account_id, events in read:
        mine = by_account.get(account_id)
        if mine:
            said[account_id] = with_drift(mine, drift_origins(mine, events, catalog, rules, as_of, owners=owners,
                                                             past=past.get(account_id, ())))
    pending = {account_id: iter(found) for account_id, found in said.items()}
    return [next(pending[c.account_id]) if c.account_id in pending else c for c in corrections]
