"""Partition leases of `project --follow`, in the event store (like Axon's token store: a claim
per segment with an owner and a timeout).

    follow_lease    per account-hash partition (domain/partitions.py): its owner, until when, and a
                    fencing epoch that grows at every change of owner
    follow_member   each live follower and until when it says so: how many share the partitions

    balance(conn, owner, ttl_s) -> {partition: epoch}    heartbeat, then give up or claim to the fair share
    fence(conn, owner, held, ttl_s) -> {partition: epoch} inside the writing transaction: renews and
                                                          row-locks the leases still ours (same epoch)
    release(conn, owner)                                  a clean exit: partitions free at once
    hold_owner_lock(conn, owner)                          on its own session: the owner is alive
    adopt(conn, owner, ttl_s) -> ({partition: epoch}, gone) at a follower's start: the partitions
                                                          of holders whose session is gone, at once
    settled(conn, owner, since) -> bool                   a one pass holds its share, the rest have
                                                          holders seen alive since `heartbeats`

The fence is the guard: a follower writes an account only inside a transaction whose `fence` still
returned its partition. `fence` takes the lease rows FOR UPDATE (an UPDATE), so while a follower
writes, a claim of its partitions (FOR UPDATE SKIP LOCKED) passes them by; once its lease expired
and another follower claimed the partition (epoch + 1), its next `fence` no longer returns it.
A dead follower's partitions are claimable when its lease expires (ttl_s); its membership too, so
the survivors' fair share grows. A running follower waits for that: a holder whose event-store
session is gone is not taken for dead by it, since a server restart, a terminated backend or the
supervisor's backoff end the session of a live follower too (its session still carries its owner as
`application_name`, SESSION_NAME, for an operator to see).

A follower that is starting does not wait (`adopt`): each follower holds a session-level advisory
lock named by its owner (OWNER_LOCK, `hold_owner_lock`) on its own session, from its start and again
on every new session; the starting one claims at once, each at a new epoch, the unexpired partitions
of holders with no such lock on the server, and drops their membership. That is a follower killed
and started again (`kill -9`, a crashed pod restarted): its successor holds its partitions as soon
as it starts, not a lease later. Were the holder alive with its session gone for a moment (a server
restart just as another follower starts), the new epoch fences it out as a lease expiry would; it
balances again at its next step (its share comes back from `surplus`: what the other took last).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime

import psycopg

from domain.partitions import PARTITIONS
from eventlog.tables_present import ddl_done

DDL = """
CREATE TABLE IF NOT EXISTS follow_lease (
    partition   integer PRIMARY KEY,
    owner       text,                          -- NULL: free
    epoch       bigint NOT NULL DEFAULT 0,     -- + 1 at every claim: the fencing token
    expires_at  timestamptz NOT NULL DEFAULT '-infinity'
);
CREATE TABLE IF NOT EXISTS follow_member (
    owner        text PRIMARY KEY,
    alive_until  timestamptz NOT NULL
);
"""


SESSION_NAME = "recompute follow {owner}"  # the application_name of a follower's event-store session
OWNER_LOCK = 0x72637066  # the class of each follower's owner lock: pg_advisory_lock(OWNER_LOCK, hashtext(owner))


def session_name(owner: str) -> str:
    return SESSION_NAME.format(owner=owner)[:63]


def ensure_leases(conn: psycopg.Connection, partitions: int = PARTITIONS) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('recompute.follow.ddl'))")
        if ddl_done(conn, DDL) and conn.execute("SELECT count(*) >= %s FROM follow_lease",  # type: ignore[index]  # always one row
                                                (partitions,)).fetchone()[0]:
            return  # made: nothing to wait for behind the steps of running followers
        conn.execute(DDL)
        conn.execute("INSERT INTO follow_lease (partition) SELECT generate_series(0, %s - 1) ON CONFLICT DO NOTHING",
                     (partitions,))


def fair_share(partitions: int, live_members: int) -> int:
    """Pure: how many partitions one of `live_members` followers holds at most."""
    return math.ceil(partitions / max(live_members, 1))


def surplus(mine: Mapping[int, int], share: int, taken: Sequence[int]) -> list[int]:
    """Pure: which of `mine` to give up to hold `share`: those taken last (`taken`: the partitions in
    the order this follower took them; one not in it counts as held longest, the higher given up
    first). What a follower held longest is what its caches hold: a returning follower gets back the
    partitions taken over from it, not the other's own (both would start cold)."""
    rank = {p: i for i, p in enumerate(taken)}
    kept_longest_first = sorted(mine, key=lambda p: (rank.get(p, -1), p))
    return sorted(kept_longest_first[max(share, 0):])


def balance(conn: psycopg.Connection, owner: str, ttl_s: float, taken: Sequence[int] = ()) -> dict[int, int]:
    """Says this follower is alive, gives up what is over its fair share (those it took last:
    `surplus`), claims free or expired partitions up to it (never one another follower is writing),
    and returns what it holds."""
    with conn.transaction():
        conn.execute("INSERT INTO follow_member (owner, alive_until) VALUES (%s, now() + make_interval(secs => %s)) "
                     "ON CONFLICT (owner) DO UPDATE SET alive_until = excluded.alive_until", (owner, ttl_s))
        conn.execute("DELETE FROM follow_member WHERE alive_until < now() - interval '1 hour'")
        live, total = conn.execute("SELECT (SELECT count(*) FROM follow_member WHERE alive_until > now()), "  # type: ignore[misc]  # always one row
                                   "(SELECT count(*) FROM follow_lease)").fetchone()
        share = fair_share(total, live)
        mine = _held(conn, owner)
        if len(mine) > share:
            extra = surplus(mine, share, taken)
            conn.execute("UPDATE follow_lease SET owner = NULL, expires_at = now() "
                         "WHERE owner = %s AND partition = ANY(%s)", (owner, extra))
            for p in extra:
                del mine[p]
        elif len(mine) < share:
            for p, epoch in conn.execute(
                    "UPDATE follow_lease l SET owner = %s, epoch = l.epoch + 1, "
                    "expires_at = now() + make_interval(secs => %s) FROM ("
                    " SELECT partition FROM follow_lease WHERE (owner IS NULL OR expires_at <= now()) "
                    " AND owner IS DISTINCT FROM %s ORDER BY partition FOR UPDATE SKIP LOCKED LIMIT %s) c "
                    "WHERE l.partition = c.partition RETURNING l.partition, l.epoch",
                    (owner, ttl_s, owner, share - len(mine))):
                mine[p] = epoch
    return mine


def fence(conn: psycopg.Connection, owner: str, held: dict[int, int], ttl_s: float) -> dict[int, int]:
    """In the caller's transaction: renews the leases of `held` that are still ours at the same
    epoch and locks them until it ends; the partitions lost since are left out."""
    if not held:
        return {}
    parts = sorted(held)
    rows = conn.execute(
        "UPDATE follow_lease l SET expires_at = now() + make_interval(secs => %s) "
        "FROM unnest(%b::int[], %b::bigint[]) AS h(partition, epoch) "
        "WHERE l.partition = h.partition AND l.epoch = h.epoch AND l.owner = %s RETURNING l.partition, l.epoch",
        (ttl_s, parts, [held[p] for p in parts], owner)).fetchall()
    return {p: e for p, e in rows}


def hold_owner_lock(conn: psycopg.Connection, owner: str) -> None:
    """On the follower's own session, for as long as it lasts: while it is held, `adopt` leaves the
    owner's partitions alone (owners are unique: nobody else asks for it)."""
    conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (OWNER_LOCK, owner))


def adopt(conn: psycopg.Connection, owner: str, ttl_s: float) -> tuple[dict[int, int], list[str]]:
    """At a follower's start: claims at once, each at a new epoch, the unexpired partitions of
    holders whose owner lock is held by no session of this database (`hold_owner_lock`), drops
    their membership, and returns what it holds and whose partitions those were."""
    with conn.transaction():
        gone = [holder for holder, in conn.execute(
            "SELECT DISTINCT l.owner FROM follow_lease l WHERE l.owner IS NOT NULL AND l.owner <> %s "
            "AND l.expires_at > now() AND NOT EXISTS (SELECT FROM pg_locks k WHERE k.locktype = 'advisory' "
            " AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            " AND k.classid = %s::int4::oid AND k.objid = hashtext(l.owner)::oid AND k.objsubid = 2)",
            (owner, OWNER_LOCK))]
        if gone:
            conn.execute(
                "UPDATE follow_lease l SET owner = %s, epoch = l.epoch + 1, "
                "expires_at = now() + make_interval(secs => %s) FROM ("
                " SELECT partition FROM follow_lease WHERE owner = ANY(%s) AND expires_at > now() "
                " FOR UPDATE SKIP LOCKED) c WHERE l.partition = c.partition", (owner, ttl_s, gone))
            conn.execute("DELETE FROM follow_member WHERE owner = ANY(%s)", (gone,))
        return _held(conn, owner), sorted(gone)


def release(conn: psycopg.Connection, owner: str) -> None:
    with conn.transaction():
        conn.execute("UPDATE follow_lease SET owner = NULL, expires_at = now() WHERE owner = %s", (owner,))
        conn.execute("DELETE FROM follow_member WHERE owner = %s", (owner,))


def heartbeats(conn: psycopg.Connection) -> dict[str, datetime]:
    """Each member's alive_until now: what `settled` compares with, to see who has said so since."""
    return dict(conn.execute("SELECT owner, alive_until FROM follow_member").fetchall())


def settled(conn: psycopg.Connection, owner: str, since: Mapping[str, datetime]) -> bool:
    """Every partition has a holder seen alive and `owner` holds its fair share: nothing is left to
    claim. A holder is seen alive once it renewed its membership past `since` (its `heartbeats`
    when the caller began) or joined after; until then it may be a follower killed a moment ago,
    whose lease and membership still stand but which will never do its partitions."""
    free, unseen, live, total, mine = conn.execute(  # type: ignore[misc]  # always one row
        "SELECT (SELECT count(*) FROM follow_lease WHERE owner IS NULL OR expires_at <= now()), "
        "(SELECT count(*) FROM follow_lease l LEFT JOIN follow_member m ON m.owner = l.owner "
        "  LEFT JOIN unnest(%b::text[], %b::timestamptz[]) AS s(owner, alive_until) ON s.owner = l.owner "
        "  WHERE l.owner <> %s AND l.expires_at > now() AND (m.owner IS NULL OR m.alive_until <= s.alive_until)), "
        "(SELECT count(*) FROM follow_member WHERE alive_until > now()), (SELECT count(*) FROM follow_lease), "
        "(SELECT count(*) FROM follow_lease WHERE owner = %s AND expires_at > now())",
        (list(since), list(since.values()), owner, owner)).fetchone()
    return free == 0 and unseen == 0 and mine >= min(fair_share(total, live), total)  # type: ignore[no-any-return]  # counts: ints


def owners(conn: psycopg.Connection) -> dict[str, list[int]]:
    """Who holds which partition now (for status and tests)."""
    found: dict[str, list[int]] = {}
    for owner, p in conn.execute("SELECT owner, partition FROM follow_lease WHERE owner IS NOT NULL "
                                 "AND expires_at > now() ORDER BY partition"):
        found.setdefault(owner, []).append(p)
    return found


def _held(conn: psycopg.Connection, owner: str) -> dict[int, int]:
    return {p: e for p, e in conn.execute(
        "SELECT partition, epoch FROM follow_lease WHERE owner = %s", (owner,))}
