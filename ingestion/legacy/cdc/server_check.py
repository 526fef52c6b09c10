"""What a legacy database's server must allow before it can have a change stream. Pure: the
settings in, one line per missing one out (`cdc setup` prints them and exits 2)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSettings:
    wal_level: str
    role: str
    can_replicate: bool  # the REPLICATION attribute (or superuser)
    max_replication_slots: int
    slots_used: int
    max_wal_senders: int
    senders_used: int
    has_slot: bool  # this store's slot exists already (it needs no new one)


def missing_settings(s: ServerSettings) -> list[str]:
    missing = []
    if s.wal_level != "logical":
        missing.append(f"wal_level = logical (it is {s.wal_level}; a restart is needed)")
    if not s.can_replicate:
        missing.append(f"the REPLICATION attribute for role {s.role} (ALTER ROLE {s.role} REPLICATION)")
    if not s.has_slot and s.slots_used >= s.max_replication_slots:
        missing.append(f"a free replication slot (max_replication_slots = {s.max_replication_slots}, "
                       f"{s.slots_used} used)")
    if s.senders_used >= s.max_wal_senders:
        missing.append(f"a free WAL sender (max_wal_senders = {s.max_wal_senders}, {s.senders_used} in use)")
    return missing


@dataclass(frozen=True)
class TableIdentity:
    table: str
    exists: bool
    replica_identity: str  # pg_class.relreplident: d(efault) n(othing) f(ull) i(ndex)
    has_primary_key: bool


def why_not_published(t: TableIdentity) -> str | None:
    """None when the table's deletes and updates carry their key; otherwise why it is left out.
    (Publishing a table without a replica identity makes its owners' own UPDATEs and DELETEs fail.)"""
    if not t.exists:
        return "no such table"
    if t.replica_identity == "n" or (t.replica_identity == "d" and not t.has_primary_key):
        return ("no primary key and no replica identity: not published (publishing it would make its "
                "owners' UPDATEs fail); its changes reach the log through `recompute ingest --resync`")
    return None
