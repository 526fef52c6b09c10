"""A fleet split into ranges of accounts, one per worker of an evaluation; and how many streams a
plan would fold, so that one with little to fold runs here without starting any worker."""

from __future__ import annotations

from datetime import datetime

from eventlog.account_log import account_ids
from eventlog.account_range import AccountRange
from eventlog.range_reads import stream_heads, streaming_session
from eventlog.stores import Stores
from projections.evaluation.kept_facts import DecisionKey, kept_accounts_sorted, results_standing


def account_ranges(stores: Stores, parts: int) -> list[AccountRange]:
    """Splits the accounts in the log into `parts` ranges of about equal size.

    The ranges cover every id whatever their bounds (the first and last are open), so the bounds
    need only be a fair sample: the kept facts' accounts when there are enough of them (an index
    read of ~10k keys, measured ~0.4 s less than the log's distinct streams on 445k events), else
    the log's streams."""
    with stores.connect(purpose="split the fleet") as conn:
        ids = kept_accounts_sorted(conn)
        if len(ids) < parts:
            ids = account_ids(conn)
    if parts <= 1 or len(ids) < parts:
        return [AccountRange()]
    bounds = [ids[len(ids) * i // parts] for i in range(1, parts)]
    return [AccountRange(lo, hi) for lo, hi in zip([None, *bounds], [*bounds, None], strict=True)]


def streams_to_decide(stores: Stores, key: DecisionKey, as_of: datetime) -> int:
    """How many streams of the log have no kept result that would stand for a plan at `as_of`
    under `key` (kept_facts: their facts stand, the decision beside them, and what it found), so
    that plan folds or decides them. The rows' digests are left to the plan: a changed row costs
    its account a diff, not a fold. Two reads in one snapshot: the streams' heads (walked, ~70 ms
    at 10,000 streams) and the kept results that would stand."""
    with stores.connect(purpose="count what to fold") as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        collate = streaming_session(conn)
        heads = stream_heads(conn, AccountRange().where("originator_id", collate=collate), walk=not collate)
        standing = results_standing(conn, key, as_of)
    return sum(1 for account, head in heads.items() if standing.get(account) != head)
