"""Sessions kept across a follower's steps: its reads (the legacy rows, the tables' schemas, the
parked rows, the audit) and its writes (the legacy stores' and their audit). Opened afresh, they
cost a step ~10 new backends (a fork and authentication each, on the same two cores) whose catalog
caches start cold, so each first look at information_schema was slow too: measured 14% and 12% of
a step at 100 changes/s.

    kept = KeptStores.keeping(stores, idle_in_transaction_timeout="3000ms")
    with kept.connect("subs", purpose="schema") as conn:   # the block ends its transaction,
        ...                                               # and the session waits for the next one
    kept.drop()                                           # every kept session closed

A `KeptStores` is a `Stores`: code that opens a session per use (`with stores.connect(...)`) keeps it
by being given one (psycopg's `with` ends the transaction, then calls `close()`, which gives the
session back). What a session is kept under is everything it was asked with (the store, the
purpose: its `application_name`, its settings), so a use never finds another's session settings;
one session is kept per such key (a second asked while the first is in use is opened, and closed
after). Every kept session carries `idle_in_transaction_timeout`, so a frozen process never holds
locks in one longer than that. A session the server ended while it waited is found broken only when
next used: the caller's step fails once, and `drop()` (the follower calls it on any lost session)
closes them all, so the next step opens new ones. Replication sessions are never kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import psycopg
from psycopg import pq

from eventlog.stores import Stores, connect_to


class _KeptConnection(psycopg.Connection[Any]):
    """A session that goes back to its `KeptStores` where another would close."""

    _home: KeptStores | None = None
    _key: tuple[Any, ...] = ()

    def close(self) -> None:
        home = self._home
        if home is None or not home._take_back(self):
            super().close()

    def really_close(self) -> None:
        self._home = None
        super().close()


@dataclass(frozen=True)
class KeptStores(Stores):
    idle_in_transaction_timeout: str | None = None
    _idle: dict[tuple[Any, ...], _KeptConnection] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def keeping(cls, stores: Stores, *, idle_in_transaction_timeout: str | None = None) -> KeptStores:
        return cls(**{f.name: getattr(stores, f.name) for f in fields(Stores)},
                   idle_in_transaction_timeout=idle_in_transaction_timeout)

    def connect(self, store: str = "eventstore", *, purpose: str | None = None, **options: Any
                ) -> psycopg.Connection[Any]:
        if options.get("replication"):
            return super().connect(store, purpose=purpose, **options)
        key = (store, purpose, tuple(sorted(options.items())))
        conn = self._idle.pop(key, None)
        if conn is not None and not (conn.closed or conn.broken):
            return conn
        options.setdefault("idle_in_transaction_timeout", self.idle_in_transaction_timeout)
        options.setdefault("connect_timeout", self.connect_timeout)
        made = connect_to(self.dsn(store), purpose=purpose, connection_class=_KeptConnection, **options)
        assert isinstance(made, _KeptConnection)
        made._home, made._key = self, key
        return made

    def kept(self) -> int:
        """How many sessions wait to be used again."""
        return len(self._idle)

    def drop(self) -> None:
        """Every kept session closed (the server went away, or the follower stops)."""
        while self._idle:
            _, conn = self._idle.popitem()
            conn.really_close()

    def _take_back(self, conn: _KeptConnection) -> bool:
        """Keeps `conn` for its key's next use; False: close it (broken, or one is kept already)."""
        if conn.closed or conn.broken or conn._key in self._idle:
            return False
        if conn.info.transaction_status != pq.TransactionStatus.IDLE:
            try:
                conn.rollback()
            except psycopg.Error:
                return False
        self._idle[conn._key] = conn
        return True
