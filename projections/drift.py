"""Where the planned corrections' drift came from: the shell that feeds domain/drift.py.

Only the drifting accounts pay: their whole streams (the legacy rows' observations too, which
`plan` itself never decodes) and their applied corrections from the audit are read in one pass
each, and `drift_origins` says each correction's cause, since, owner, by and rewrites.

`drift_origins` is pure, so what it said is kept (read_model_facts' `drift`, beside the account's
kept facts) under the digest of everything it read (`drift_key`: the stream's head version, T, the
rules, the catalog, the owners, the account's applied corrections, the corrections themselves and
DRIFT_VERSION); a plan that finds the same digest takes what was said and reads no stream. A
follower's step (which has read the streams) neither reads nor keeps it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime

import orjson

from domain.catalog import Catalog
from domain.diff import Correction, Drift
from domain.drift import PastCorrection, drift_origins, with_drift
from domain.events import AccountEvent
from domain.fold import FOLD_VERSION, Folding
from domain.owners import Owners
from domain.rules import Rules
from eventlog.account_log import heads_of
from eventlog.account_range import AccountRange
from eventlog.range_reads import account_events
from eventlog.stores import Stores
from eventlog.tables_present import has_columns, has_tables, may_write
from projections.apply.audit import applied_corrections
from projections.evaluation.kept_facts import TABLE

DRIFT_VERSION = "1"  # bump with any change to what domain/drift.drift_origins says for the same inputs


def attach_drift(stores: Stores, catalog: Catalog, rules: Rules, as_of: datetime,
                 corrections: Sequence[Correction], owners: Owners, *,
                 streams: Mapping[str, Sequence[AccountEvent]] | None = None, kept: bool = True,
                 starts: Mapping[str, Folding] | None = None) -> list[Correction]:
    """`corrections` (in their order), each with its drift; `streams`: the accounts' whole streams
    when the caller has read them already (a follower's step), else they are read here, but for
    the accounts whose kept drift stands (`kept=False`: every one read and walked, nothing kept);
    `starts`: with `streams`, folds of them part way where each walk may start (drift_origins)."""
    by_account: dict[str, list[Correction]] = {}
    for c in corrections:
        by_account.setdefault(c.account_id, []).append(c)
    if not by_account:
        return list(corrections)
    accounts = sorted(by_account)
    past = applied_corrections(stores, accounts, like=corrections, until=as_of)
    said: dict[str, list[Correction]] = {}
    if streams is not None:
        for account_id in accounts:
            if account_id in streams:
                said[account_id] = _said(by_account[account_id], streams[account_id], catalog, rules, as_of,
                                         owners, past.get(account_id, ()), (starts or {}).get(account_id))
    else:
        keys, standing = _kept(stores, by_account, catalog, rules, as_of, owners, past) if kept else ({}, {})
        for account_id, drifts in standing.items():
            said[account_id] = with_drift(by_account[account_id], drifts)
        missing = tuple(a for a in accounts if a not in standing)
        if missing:
            for account_id, events in account_events(stores, AccountRange(ids=missing)):
                said[account_id] = _said(by_account[account_id], events, catalog, rules, as_of, owners,
                                         past.get(account_id, ()))
            _keep(stores, {a: (keys[a], said[a]) for a in missing if a in keys and a in said})
    pending = {account_id: iter(found) for account_id, found in said.items()}
    return [next(pending[c.account_id]) if c.account_id in pending else c for c in corrections]


def _said(mine: list[Correction], events: Sequence[AccountEvent], catalog: Catalog, rules: Rules, as_of: datetime,
          owners: Owners, past: Sequence[PastCorrection], start: Folding | None = None) -> list[Correction]:
    return with_drift(mine, drift_origins(mine, events, catalog, rules, as_of, owners=owners, past=past, start=start))


def drift_key(context: bytes, head: int, past: Sequence[PastCorrection], corrections: Sequence[Correction]) -> bytes:
    """The digest of every input of `drift_origins` for one account: its stream named by its head
    version (the log only grows), its applied corrections and its corrections, in `context`
    (`drift_context`: what every account of one plan shares)."""
    return hashlib.sha256(context + orjson.dumps([
        head, [[p.table, p.op, p.key, p.column, p.to, p.at.isoformat()] for p in past],
        [c.model_dump(mode="json") for c in corrections]], option=orjson.OPT_SORT_KEYS)).digest()


def drift_context(as_of: datetime, rules: Rules, catalog: Catalog, owners: Owners) -> bytes:
    """What every account's drift in one plan depends on alike: T, the rules, the catalog, the
    owners, and the code that says it (DRIFT_VERSION, FOLD_VERSION)."""
    return orjson.dumps([DRIFT_VERSION, FOLD_VERSION, as_of.isoformat(), rules.digest,
                         catalog.model_dump(mode="json"), sorted(owners.names.items())], option=orjson.OPT_SORT_KEYS)


def _kept(stores: Stores, by_account: Mapping[str, list[Correction]], catalog: Catalog, rules: Rules,
          as_of: datetime, owners: Owners, past: Mapping[str, Sequence[PastCorrection]]
          ) -> tuple[dict[str, bytes], dict[str, list[Drift]]]:
    """Each account's drift key, and the drift kept under it where it stands."""
    accounts = sorted(by_account)
    with stores.connect(purpose="read kept drift") as conn:
        if not has_tables(conn, TABLE) or not has_columns(conn, TABLE, "drift_key", "drift"):
            return {}, {}
        heads = heads_of(conn, accounts)
        context = drift_context(as_of, rules, catalog, owners)
        keys = {a: drift_key(context, heads[a], past.get(a, ()), by_account[a]) for a in accounts if a in heads}
        rows = conn.execute(f"SELECT account_id, drift_key, drift FROM {TABLE} WHERE account_id = ANY(%s) "
                            "AND drift_key IS NOT NULL", (list(keys),)).fetchall()
    kept = {a: [Drift.model_validate(d) for d in orjson.loads(drift)] for a, key, drift in rows
            if keys.get(a) == bytes(key)}
    return keys, {a: d for a, d in kept.items() if len(d) == len(by_account[a])}


def _keep(stores: Stores, said: Mapping[str, tuple[bytes, list[Correction]]]) -> None:
    """Keeps what was said beside the accounts' kept facts (an account with none keeps nothing;
    nothing when the event store cannot be written)."""
    if not said:
        return
    rows = [(key, orjson.dumps([c.drift.model_dump(mode="json") for c in corrections if c.drift is not None]), a)
            for a, (key, corrections) in said.items()]
    with stores.connect(purpose="keep drift") as conn:
        if not may_write(conn, TABLE, "UPDATE"):
            return
        with conn.cursor() as cur:
            cur.executemany(f"UPDATE {TABLE} SET drift_key = %s, drift = %s WHERE account_id = %s", rows)

