"""A logical replication connection over psycopg 3's `pq` layer (psycopg 3 has no replication API).

    conn = ReplicationConnection(stores, store)             # replication=database, DateStyle ISO, UTC
    consistent_point, snapshot = conn.create_slot("s")      # CREATE_REPLICATION_SLOT ... (SNAPSHOT 'export')
    conn.start("s", "p", from_lsn)                          # START_REPLICATION ... -> COPY_BOTH
    message = conn.read(timeout)                            # XLogData | Keepalive | None
    conn.confirm(flushed)                                   # standby status update: the slot may move on

Only the simple query protocol works on a replication connection, so commands go through
`PGconn.exec_`; the stream is CopyData read with `get_copy_data(async)` after waiting on the socket.
"""

from __future__ import annotations

import select
import time
from datetime import UTC, datetime

from psycopg import pq

from eventlog.stores import Stores
from ingestion.legacy.cdc.pgoutput import Keepalive, XLogData, decode_copy_data, lsn_text, parse_lsn, standby_status


class ReplicationError(Exception):
    """The server refused a replication command, or the stream ended."""


class ReplicationConnection:
    def __init__(self, stores: Stores, store: str, *, sender_timeout_s: float | None = None) -> None:
        """`sender_timeout_s`: the server ends the session when we have not answered for that long
        (wal_sender_timeout, per session since PostgreSQL 12; default 60 s): a reader frozen with
        its follower releases the slot for the one that took its place (issue 17)."""
        session = {"DateStyle": "ISO"}
        if sender_timeout_s is not None:
            session["wal_sender_timeout"] = str(int(sender_timeout_s * 1000))
        self._conn = stores.connect(store, purpose="cdc", replication="database", autocommit=True, session=session)
        self._pg = self._conn.pgconn
        self.streaming = False

    def command(self, text: str) -> list[tuple[str | None, ...]]:
        result = self._pg.exec_(text.encode())
        if result.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
            message = (result.error_message or self._pg.error_message).decode(errors="replace").strip()
            raise ReplicationError(message)
        return [tuple(None if (v := result.get_value(row, col)) is None else v.decode()
                      for col in range(result.nfields)) for row in range(result.ntuples)]

    def create_slot(self, slot: str) -> tuple[int, str]:
        """A pgoutput slot; returns its consistent point and the exported snapshot, valid until the
        next command on this connection: a REPEATABLE READ transaction that sets it sees exactly
        the rows committed before the slot's first change."""
        (row,) = self.command(f'CREATE_REPLICATION_SLOT "{slot}" LOGICAL pgoutput (SNAPSHOT \'export\')')
        return parse_lsn(str(row[1])), str(row[2])

    def start(self, slot: str, publication: str, from_lsn: int) -> None:
        self._pg.send_query(
            f"START_REPLICATION SLOT \"{slot}\" LOGICAL {lsn_text(from_lsn)} "
            f"(proto_version '1', publication_names '{publication}')".encode())
        result = self._pg.get_result()
        if result is None or result.status != pq.ExecStatus.COPY_BOTH:
            message = (result.error_message if result else self._pg.error_message).decode(errors="replace")
            raise ReplicationError(message.strip() or "START_REPLICATION did not start streaming")
        self._pg.nonblocking = 1
        self.streaming = True

    def read(self, timeout: float) -> XLogData | Keepalive | None:
        """The next message, waiting at most `timeout` seconds for it; None when none came."""
        deadline, consumed = time.monotonic() + timeout, False
        while True:
            nbytes, data = self._pg.get_copy_data(1)
            if nbytes > 0:
                return decode_copy_data(bytes(data))
            if nbytes == -1:
                self.streaming = False
                result = self._pg.get_result()
                message = result.error_message.decode(errors="replace").strip() if result else ""
                raise ReplicationError(message or "the server ended the replication stream")
            if not consumed:  # first what the socket already holds, without waiting
                self._pg.consume_input()
                consumed = True
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            select.select([self._pg.socket], [], [], left)
            self._pg.consume_input()

    def confirm(self, flushed: int, *, reply: bool = False) -> None:
        """Tells the server everything up to `flushed` is safely committed (the slot moves on)."""
        self._pg.put_copy_data(standby_status(written=flushed, flushed=flushed, applied=flushed,
                                              now=datetime.now(UTC), reply=reply))
        while self._pg.flush() == 1:
            select.select([], [self._pg.socket], [], 1.0)

    def fileno(self) -> int:
        """The socket, to wait on several streams at once (select)."""
        return self._pg.socket

    def close(self) -> None:
        self._conn.close()

    @property
    def closed(self) -> bool:
        return self._conn.closed
