"""`apply --plan FILE`: write exactly a saved plan's corrections, through apply's protocol (protocol.py).

Under apply's lock: rules known otherwise are refused, then a plan some run already finished is
refused (`PlanAlreadyApplied`); an interrupted run's intents are settled (recovery), and the plan's
corrections that a run of this plan already settled (applied or stale) are left out, so a rerun after
a kill writes each correction once. The rest are written per batch of accounts as `apply` writes its
own: intents with the plan's digest, compare-and-set on each correction's `from` (a row that no
longer holds it is stale and left alone), settle, events. Nothing is re-planned: the accounts' true
states at the plan's T are computed only for what a write sets besides (stage_since, an entitlement's
source) and the events' causes. The run's `apply_run` row carries the digest from the start and is
finished at the end: a finished run is what "already applied" means.
"""

from __future__ import annotations

import uuid

import psycopg
from psycopg.rows import dict_row

from domain.catalog import fold_catalog
from domain.diff import Correction
from domain.rules import Rules
from domain.saved_plan import SavedPlan, correction_key
from eventlog.own_tables import check_known_rules
from eventlog.range_reads import catalog_events
from eventlog.stores import Stores
from projections.apply.account_plans import AccountPlan, replan
from projections.apply.audit import RunInfo, correction_of
from projections.apply.cas_sql import spec_of
from projections.apply.protocol import (
    DEFAULT_OPTIONS,
    ApplyOptions,
    ApplyResult,
    Step,
    _chunks,
    _es,
    _exclusive,
    _finish_run,
    apply_batch,
    choose_accounts,
    recover,
    start_run,
)


class PlanAlreadyApplied(RuntimeError):
    """A run of this saved plan has finished; nothing was written."""


def apply_saved(stores: Stores, rules: Rules, saved: SavedPlan, options: ApplyOptions = DEFAULT_OPTIONS,
                *, on_step: Step = lambda _: None) -> ApplyResult:
    """`rules` are the active rules; the caller has checked they are the plan's. A correction rules-v1 §3
    does not allow (a file whose digest was made anew after an edit) raises WriteRefused before anything."""
    for c in saved.corrections:
        spec_of(c)
    result = ApplyResult(run_id=str(uuid.uuid4()), as_of=saved.as_of, rules_version=rules.version,
                         rules_digest=rules.digest, plan_digest=saved.digest)
    with _exclusive(stores):
        with _es(stores) as conn:
            check_known_rules(conn, rules)
            refuse_if_applied(conn, saved.digest)
        recover(stores, result)
        on_step("recovered")
        with _es(stores) as conn:
            settled = settled_corrections(conn, saved.digest)
        result.settled_before.update(settled.values())
        todo = [c for c in saved.corrections if correction_key(c) not in settled]
        disagreeing, _ = choose_accounts(saved.corrections, saved.accounts_checked,
                                         ApplyOptions(account=saved.account, force=options.force,
                                                      max_share=options.max_share))
        by_account: dict[str, list[Correction]] = {}
        for c in todo:
            by_account.setdefault(c.account_id, []).append(c)
        result.accounts_checked, result.accounts_disagreeing = saved.accounts_checked, len(disagreeing)
        result.accounts_chosen = len(by_account)
        run = RunInfo(result.run_id, rules.version, saved.as_of, rules.digest, plan_digest=saved.digest)
        start_run(stores, run, rules)
        on_step("started")
        if by_account:
            catalog = fold_catalog(catalog_events(stores), as_of=saved.as_of)
            for batch in _chunks(sorted(by_account), options.batch_accounts):
                states = {p.state.account_id: p.state for p in replan(stores, rules, saved.as_of, catalog, batch)}
                apply_batch(stores, run, [AccountPlan(states[a], by_account[a]) for a in batch if a in states],
                            result, on_step)
                # an account cf_prod no longer has as of T: nothing of it is written
                result.done += [(c, "stale") for a in batch if a not in states for c in by_account[a]]
        _finish_run(stores, result)
    return result


def refuse_if_applied(conn: psycopg.Connection, digest: str) -> None:
    row = conn.execute("SELECT run_id, finished_at FROM apply_run WHERE plan_digest = %s AND finished_at IS NOT NULL "
                       "ORDER BY finished_at LIMIT 1", (digest,)).fetchone()
    if row is not None:
        raise PlanAlreadyApplied(f"this plan (digest {digest}) was already applied, by run {row[0]} at "
                                 f"{row[1].isoformat()}; make a new plan with `recompute plan --out`")


def settled_corrections(conn: psycopg.Connection, digest: str) -> dict[bytes, str]:
    """The plan's corrections that runs of it (interrupted ones) settled: correction -> applied | stale."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("SELECT * FROM correction_audit WHERE plan_digest = %s AND status IN ('applied', 'stale') "
                           "ORDER BY id", (digest,)).fetchall()
    return {correction_key(correction_of(r)): r["status"] for r in rows}
