"""Where every database is, and the one way a connection to one is opened.

`Stores` names the three legacy stores of legacy-stores.md and our event store. It holds only
connection strings, so it is frozen and picklable: the composition root builds it once and passes it
by keyword, and Dask tasks receive it as it is. `connect` owns what every session of ours carries:
UTC as its time zone (timestamps are compared and written as instants), an `application_name`
starting `recompute` (operators see who is connected; recovery and leases find their own sessions
by it), a connect timeout, and the optional statement, lock and idle timeouts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import orjson
import psycopg
import psycopg.conninfo
import psycopg.types.json

from domain.legacy_tables import STORES

Store = Literal["cf_prod", "billing_prod", "subs", "eventstore"]
STORE_NAMES: tuple[str, ...] = get_args(Store)
assert STORE_NAMES[:-1] == STORES, "Stores' fields follow the catalogue's list of legacy stores"

Connection = psycopg.Connection  # the type callers hint with, so they need not import the driver
Cursor = psycopg.Cursor
errors = psycopg.errors
Error = psycopg.Error
OperationalError = psycopg.OperationalError
ProgrammingError = psycopg.ProgrammingError  # what parse_dsn raises on a string that is not libpq's
parse_dsn = psycopg.conninfo.conninfo_to_dict  # a libpq string (key=value or URI) -> its parameters
make_dsn = psycopg.conninfo.make_conninfo  # parameters (and optionally a string to extend) -> a libpq string

APP = "recompute"


@dataclass(frozen=True)
class Stores:
    cf_prod: str
    billing_prod: str
    subs: str
    eventstore: str
    connect_timeout: int = 5

    @classmethod
    def from_dsns(cls, dsns: Mapping[str, str]) -> Stores:
        """From a mapping with one libpq string per store name (every one of STORE_NAMES)."""
        missing = [name for name in STORE_NAMES if not dsns.get(name)]
        if missing:
            raise ValueError(f"no connection string for {', '.join(missing)}")
        return cls(cf_prod=dsns["cf_prod"], billing_prod=dsns["billing_prod"], subs=dsns["subs"],
                   eventstore=dsns["eventstore"])

    def dsn(self, store: str) -> str:
        if store not in STORE_NAMES:
            raise ValueError(f"no store named {store!r} (one of {', '.join(STORE_NAMES)})")
        value: str = getattr(self, store)
        return value

    def as_dsns(self) -> dict[str, str]:
        return {name: self.dsn(name) for name in STORE_NAMES}

    def connect(self, store: str = "eventstore", *, purpose: str | None = None, autocommit: bool = False,
                read_only: bool = False, statement_timeout: str | None = None, lock_timeout: str | None = None,
                idle_in_transaction_timeout: str | None = None, session: Mapping[str, str] | None = None,
                **kwargs: Any) -> psycopg.Connection[Any]:
        """A new connection to `store`. `purpose` becomes the session's `application_name`
        (`recompute <purpose>`, or as given when it already starts with `recompute`); `session`: further
        parameters it starts with (`-c name=value`). Extra keyword arguments go to psycopg
        (`replication="database"` for a change stream)."""
        kwargs.setdefault("connect_timeout", self.connect_timeout)
        return connect_to(self.dsn(store), purpose=purpose, autocommit=autocommit, read_only=read_only,
                          statement_timeout=statement_timeout, lock_timeout=lock_timeout,
                          idle_in_transaction_timeout=idle_in_transaction_timeout, session=session, **kwargs)


def connect_to(dsn: str, *, purpose: str | None = None, autocommit: bool = False, read_only: bool = False,
               statement_timeout: str | None = None, lock_timeout: str | None = None,
               idle_in_transaction_timeout: str | None = None, session: Mapping[str, str] | None = None,
               connection_class: type[psycopg.Connection[Any]] = psycopg.Connection, **kwargs: Any
               ) -> psycopg.Connection[Any]:
    """`Stores.connect` for a server that is not (yet) one of the Stores: the embedded server's
    administration database, or a setting checked before the Stores are built. `connection_class`:
    psycopg's, or one of its own (eventlog/kept_sessions.py)."""
    given = psycopg.conninfo.conninfo_to_dict(dsn).get("options")
    options = [*([str(given)] if given else []), "-c TimeZone=UTC"]  # the string's own options kept
    if read_only:
        options.append("-c default_transaction_read_only=on")
    if statement_timeout:
        options.append(f"-c statement_timeout={statement_timeout}")
    if lock_timeout:
        options.append(f"-c lock_timeout={lock_timeout}")
    if idle_in_transaction_timeout:
        options.append(f"-c idle_in_transaction_session_timeout={idle_in_transaction_timeout}")
    options += [f"-c {name}={value}" for name, value in (session or {}).items()]
    name = APP if purpose is None else purpose if purpose.startswith(APP) else f"{APP} {purpose}"
    kwargs.setdefault("connect_timeout", Stores.connect_timeout)
    conn = connection_class.connect(dsn, autocommit=autocommit, options=" ".join(options), application_name=name,
                                    **kwargs)
    psycopg.types.json.set_json_loads(json_loads, conn)
    return conn


def json_loads(data: bytes | str) -> Any:
    """How a json or jsonb value read becomes Python: orjson (a follower's drift reads the audit's
    `key` and `to_value` of every past correction of what it corrects: the standard module's
    decoding was 6% of a step late in a load), and the standard module where the two could differ,
    so every value reads as it did: what orjson refuses (NaN), and a value with 19 digits in a row
    somewhere (orjson reads an integer past 64 bits as a float)."""
    if _LONG_DIGITS.search(data if isinstance(data, bytes) else data.encode()) is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


_LONG_DIGITS = re.compile(rb"\d{19}")
