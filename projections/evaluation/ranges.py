"""A fleet split into ranges of accounts, one per worker of an evaluation."""

from __future__ import annotations

from psycopg import sql

from eventlog.account_log import account_ids
from eventlog.account_range import AccountRange
from eventlog.stores import Stores
from eventlog.tables_present import has_tables
from projections.evaluation.kept_facts import TABLE as KEPT_TABLE


def account_ranges(stores: Stores, parts: int) -> list[AccountRange]:
    """Splits the accounts in the log into `parts` ranges of about equal size.

    The ranges cover every id whatever their bounds (the first and last are open), so the bounds
    need only be a fair sample: the kept facts' accounts when there are enough of them (an index
    read of ~10k keys, measured ~0.4 s less than the log's distinct streams on 445k events), else
    the log's streams."""
    ids: list[str] = []
    with stores.connect(purpose="split the fleet") as conn:
        if has_tables(conn, KEPT_TABLE):
            ids = sorted(row[0] for row in conn.execute(sql.SQL("SELECT account_id FROM {}").format(
                sql.Identifier(KEPT_TABLE))))
        if len(ids) < parts:
            ids = account_ids(conn)
    if parts <= 1 or len(ids) < parts:
        return [AccountRange()]
    bounds = [ids[len(ids) * i // parts] for i in range(1, parts)]
    return [AccountRange(lo, hi) for lo, hi in zip([None, *bounds], [*bounds, None])]
