"""The one place that names what `cdc setup` makes in a legacy database, and where its position is kept.

A replication slot's name is cluster-wide, so it carries the database's name (two stores, or two
test databases, on one server get a slot each); a publication lives in its database.
"""

from __future__ import annotations

import hashlib
import re

PREFIX = "recompute"


def slot_name(database: str) -> str:
    """`recompute_<database>`, in the letters a slot name allows, at most 63 of them."""
    cleaned = re.sub(r"[^a-z0-9_]", "_", database.lower())
    name = f"{PREFIX}_{cleaned}"
    if len(name) > 63 or cleaned != database:
        suffix = hashlib.sha256(database.encode()).hexdigest()[:8]
        name = f"{name[:54]}_{suffix}" if len(name) > 54 else f"{name}_{suffix}"
    return name


def publication_name(store: str) -> str:
    return f"{PREFIX}_{store}"


def checkpoint_source(store: str) -> str:
    """ingest_checkpoint.source of a store's stream: its position is the end LSN of the last
    transaction recorded, committed with the events it produced."""
    return f"cdc:{store}"


def lock_name(store: str) -> str:
    """The advisory lock a stream holds while it records a transaction, and `ingest --resync` holds
    for its whole run: they never interleave, and resync's snapshot sees all the stream recorded."""
    return f"recompute.cdc:{store}"
