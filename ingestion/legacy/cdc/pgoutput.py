"""A decoder of pgoutput, PostgreSQL's logical replication protocol (version 1), and of the
replication stream's envelopes. Pure: bytes in, frozen values out.

The formats are the PostgreSQL docs' "Logical Replication Message Formats" and "Streaming
Replication Protocol" (XLogData `w`, Primary keepalive `k`, Standby status update `r`):

    Begin      B  final_lsn:i64  commit_ts:i64  xid:i32
    Commit     C  flags:i8  commit_lsn:i64  end_lsn:i64  commit_ts:i64
    Origin     O  lsn:i64  name:str
    Relation   R  relid:i32  namespace:str  name:str  replident:i8  ncols:i16  (flags:i8 name:str type:i32 typmod:i32)*
    Type       Y  oid:i32  namespace:str  name:str
    Insert     I  relid:i32  'N' tuple
    Update     U  relid:i32  ['K'|'O' tuple]  'N' tuple
    Delete     D  relid:i32  ('K'|'O') tuple
    Truncate   T  nrels:i32  options:i8  relid:i32*
    tuple      ncols:i16  ('n' | 'u' | 't' len:i32 bytes)*

Times are microseconds since 2000-01-01 UTC; strings end with a zero byte. A tuple's value is
`None` (SQL NULL), `UNCHANGED` (an unchanged TOASTed value the server did not send) or its text.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

PG_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)


class Unchanged:
    """The 'u' marker: an unchanged TOASTed value, not sent (carry it forward from the last copy)."""

    _instance: Unchanged | None = None

    def __new__(cls) -> Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = Unchanged()

Value = str | None | Unchanged
Tuple = tuple[Value, ...]


class DecodeError(ValueError):
    """Bytes that are not a pgoutput (v1) message."""


@dataclass(frozen=True)
class Begin:
    final_lsn: int
    commit_time: datetime
    xid: int


@dataclass(frozen=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_time: datetime


@dataclass(frozen=True)
class Origin:
    lsn: int
    name: str


@dataclass(frozen=True)
class Column:
    name: str
    type_oid: int
    typmod: int
    is_key: bool


@dataclass(frozen=True)
class Relation:
    relid: int
    namespace: str
    name: str
    replica_identity: str  # d(efault) n(othing) f(ull) i(ndex)
    columns: tuple[Column, ...]


@dataclass(frozen=True)
class TypeInfo:
    oid: int
    namespace: str
    name: str


@dataclass(frozen=True)
class Insert:
    relid: int
    new: Tuple


@dataclass(frozen=True)
class Update:
    relid: int
    new: Tuple
    old: Tuple | None = None  # the old key ('K', when the key changed) or old row ('O', REPLICA IDENTITY FULL)
    old_kind: Literal["K", "O"] | None = None


@dataclass(frozen=True)
class Delete:
    relid: int
    old: Tuple
    old_kind: Literal["K", "O"]


@dataclass(frozen=True)
class Truncate:
    relids: tuple[int, ...]
    cascade: bool
    restart_identity: bool


@dataclass(frozen=True)
class Other:
    """A message this reader does not use (a logical decoding message `M`, ...)."""

    kind: str


Message = Begin | Commit | Origin | Relation | TypeInfo | Insert | Update | Delete | Truncate | Other


@dataclass(frozen=True)
class XLogData:
    wal_start: int
    wal_end: int
    send_time: datetime
    payload: bytes


@dataclass(frozen=True)
class Keepalive:
    wal_end: int
    send_time: datetime
    reply_requested: bool


def pg_time(microseconds: int) -> datetime:
    return PG_EPOCH + timedelta(microseconds=microseconds)


def pg_microseconds(instant: datetime) -> int:
    return (instant - PG_EPOCH) // timedelta(microseconds=1)


def lsn_text(lsn: int) -> str:
    """0/16B3748, as PostgreSQL writes an LSN."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, _, low = text.partition("/")
    if not _ or not high or not low:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(high, 16) << 32) | int(low, 16)


class _Reader:
    __slots__ = ("data", "at")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, fmt: str) -> tuple[int, ...]:
        size = struct.calcsize(fmt)
        if self.at + size > len(self.data):
            raise DecodeError(f"message ends after {len(self.data)} bytes, expected more at {self.at}")
        values = struct.unpack_from(fmt, self.data, self.at)
        self.at += size
        return values

    def i8(self) -> int:
        return self.take(">b")[0]

    def u8(self) -> int:
        return self.take(">B")[0]

    def i16(self) -> int:
        return self.take(">h")[0]

    def i32(self) -> int:
        return self.take(">i")[0]

    def u32(self) -> int:
        return self.take(">I")[0]

    def i64(self) -> int:
        return self.take(">q")[0]

    def u64(self) -> int:
        return self.take(">Q")[0]

    def byte(self) -> str:
        return chr(self.u8())

    def string(self) -> str:
        end = self.data.find(b"\x00", self.at)
        if end < 0:
            raise DecodeError(f"unterminated string at {self.at}")
        text = self.data[self.at:end].decode()
        self.at = end + 1
        return text

    def raw(self, n: int) -> bytes:
        if n < 0 or self.at + n > len(self.data):
            raise DecodeError(f"value of {n} bytes runs past the message's end at {self.at}")
        chunk = self.data[self.at:self.at + n]
        self.at += n
        return chunk

    def tuple_data(self) -> Tuple:
        values: list[Value] = []
        for _ in range(self.i16()):
            kind = self.byte()
            if kind == "n":
                values.append(None)
            elif kind == "u":
                values.append(UNCHANGED)
            elif kind == "t":
                values.append(self.raw(self.i32()).decode())
            else:
                raise DecodeError(f"unknown tuple value kind {kind!r} (only text values are asked for)")
        return tuple(values)


def decode(data: bytes) -> Message:
    """One pgoutput message (the payload of an XLogData)."""
    if not data:
        raise DecodeError("empty message")
    r = _Reader(bytes(data))
    kind = r.byte()
    if kind == "B":
        return Begin(final_lsn=r.u64(), commit_time=pg_time(r.i64()), xid=r.u32())
    if kind == "C":
        return Commit(flags=r.u8(), commit_lsn=r.u64(), end_lsn=r.u64(), commit_time=pg_time(r.i64()))
    if kind == "O":
        return Origin(lsn=r.u64(), name=r.string())
    if kind == "R":
        relid, namespace, name, ident = r.u32(), r.string(), r.string(), r.byte()
        columns = []
        for _ in range(r.i16()):
            flags, column_name, type_oid, typmod = r.u8(), r.string(), r.u32(), r.i32()
            columns.append(Column(name=column_name, type_oid=type_oid, typmod=typmod, is_key=bool(flags & 1)))
        return Relation(relid=relid, namespace=namespace, name=name, replica_identity=ident, columns=tuple(columns))
    if kind == "Y":
        return TypeInfo(oid=r.u32(), namespace=r.string(), name=r.string())
    if kind == "I":
        relid = r.u32()
        _expect(r, "N")
        return Insert(relid=relid, new=r.tuple_data())
    if kind == "U":
        relid = r.u32()
        marker = r.byte()
        old: Tuple | None = None
        old_kind: Literal["K", "O"] | None = None
        if marker in ("K", "O"):
            old_kind = "K" if marker == "K" else "O"
            old = r.tuple_data()
            marker = r.byte()
        if marker != "N":
            raise DecodeError(f"update of relation {relid}: expected 'N', got {marker!r}")
        return Update(relid=relid, new=r.tuple_data(), old=old, old_kind=old_kind)
    if kind == "D":
        relid = r.u32()
        marker = r.byte()
        if marker not in ("K", "O"):
            raise DecodeError(f"delete of relation {relid}: expected 'K' or 'O', got {marker!r}")
        return Delete(relid=relid, old=r.tuple_data(), old_kind="K" if marker == "K" else "O")
    if kind == "T":
        count, options = r.i32(), r.u8()
        return Truncate(relids=tuple(r.u32() for _ in range(count)), cascade=bool(options & 1),
                        restart_identity=bool(options & 2))
    return Other(kind=kind)


def _expect(r: _Reader, marker: str) -> None:
    got = r.byte()
    if got != marker:
        raise DecodeError(f"expected {marker!r}, got {got!r} at {r.at - 1}")


def decode_copy_data(data: bytes) -> XLogData | Keepalive:
    """One CopyData message of the replication stream: XLogData (`w`) or a primary keepalive (`k`)."""
    r = _Reader(bytes(data))
    kind = r.byte()
    if kind == "w":
        start, end, sent = r.u64(), r.u64(), r.i64()
        return XLogData(wal_start=start, wal_end=end, send_time=pg_time(sent), payload=bytes(data[r.at:]))
    if kind == "k":
        end, sent, reply = r.u64(), r.i64(), r.u8()
        return Keepalive(wal_end=end, send_time=pg_time(sent), reply_requested=bool(reply))
    raise DecodeError(f"unknown replication message {kind!r}")


def standby_status(*, written: int, flushed: int, applied: int, now: datetime, reply: bool = False) -> bytes:
    """A standby status update (`r`): what we have written, flushed (committed: the slot may move
    past it) and applied; `reply` asks the server for a keepalive back."""
    return b"r" + struct.pack(">QQQqB", written, flushed, applied, pg_microseconds(now), 1 if reply else 0)
