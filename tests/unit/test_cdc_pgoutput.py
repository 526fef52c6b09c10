"""The pgoutput decoder, on messages built by hand from the protocol's documentation and on
messages captured from PostgreSQL 15 (tests/support/pgoutput_captured.json: an INSERT with a
TOASTed value, an UPDATE that leaves it unchanged, a DELETE, a TRUNCATE)."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingestion.legacy.cdc import pgoutput as po
from ingestion.legacy.cdc.row_json import json_value, row_json

CAPTURED = [bytes.fromhex(h) for h in json.loads(
    (Path(__file__).parents[1] / "support" / "pgoutput_captured.json").read_text())]
T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def s(text: str) -> bytes:
    return text.encode() + b"\x00"


def tuple_data(*values: str | None | po.Unchanged) -> bytes:
    out = struct.pack(">h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value is po.UNCHANGED:
            out += b"u"
        else:
            encoded = value.encode()
            out += b"t" + struct.pack(">i", len(encoded)) + encoded
    return out


def test_a_begin_carries_the_final_lsn_the_commit_time_and_the_xid():
    message = b"B" + struct.pack(">Qqi", 0x1_0000_00A0, po.pg_microseconds(T), 777)
    assert po.decode(message) == po.Begin(final_lsn=0x1_0000_00A0, commit_time=T, xid=777)


def test_a_commit_carries_its_commit_and_end_lsn():
    message = b"C" + struct.pack(">BQQq", 0, 0x10, 0x38, po.pg_microseconds(T))
    assert po.decode(message) == po.Commit(flags=0, commit_lsn=0x10, end_lsn=0x38, commit_time=T)


def test_a_relation_names_its_columns_their_types_and_which_are_the_key():
    message = (b"R" + struct.pack(">I", 16399) + s("public") + s("invoices") + b"d" + struct.pack(">h", 2)
               + b"\x01" + s("invoice_id") + struct.pack(">Ii", 25, -1)
               + b"\x00" + s("due_at") + struct.pack(">Ii", 1184, -1))
    relation = po.decode(message)
    assert relation == po.Relation(16399, "public", "invoices", "d", (
        po.Column("invoice_id", 25, -1, True), po.Column("due_at", 1184, -1, False)))


def test_an_update_with_its_old_key_and_an_unchanged_toast_value():
    message = (b"U" + struct.pack(">I", 5) + b"K" + tuple_data("old", None) + b"N"
               + tuple_data("new", po.UNCHANGED))
    assert po.decode(message) == po.Update(relid=5, new=("new", po.UNCHANGED), old=("old", None), old_kind="K")


def test_a_delete_and_a_truncate():
    assert po.decode(b"D" + struct.pack(">I", 5) + b"K" + tuple_data("k", None, None)) == \
        po.Delete(relid=5, old=("k", None, None), old_kind="K")
    assert po.decode(b"T" + struct.pack(">iBII", 2, 1, 5, 6)) == \
        po.Truncate(relids=(5, 6), cascade=True, restart_identity=False)


def test_a_truncated_message_is_refused_with_where_it_ended():
    with pytest.raises(po.DecodeError, match="message ends after 5 bytes"):
        po.decode(b"B\x00\x00\x00\x01")


def test_keepalives_xlogdata_and_the_standby_status_update():
    keepalive = b"k" + struct.pack(">QqB", 0x99, po.pg_microseconds(T), 1)
    assert po.decode_copy_data(keepalive) == po.Keepalive(wal_end=0x99, send_time=T, reply_requested=True)
    xlog = b"w" + struct.pack(">QQq", 1, 2, po.pg_microseconds(T)) + b"Bxyz"
    assert po.decode_copy_data(xlog).payload == b"Bxyz"
    status = po.standby_status(written=7, flushed=7, applied=7, now=T, reply=True)
    assert status[:1] == b"r" and struct.unpack(">QQQqB", status[1:]) == (7, 7, 7, po.pg_microseconds(T), 1)


def test_lsns_read_and_write_as_postgresql_writes_them():
    assert po.lsn_text(0x1_016B3748) == "1/16B3748" and po.parse_lsn("1/16B3748") == 0x1_016B3748


def test_the_captured_stream_decodes_into_four_transactions_in_order():
    messages = [po.decode(m) for m in CAPTURED]
    assert [type(m).__name__ for m in messages] == [
        "Begin", "Relation", "Insert", "Commit", "Begin", "Update", "Commit", "Begin", "Delete", "Commit",
        "Begin", "Relation", "Truncate", "Commit"]
    relation, insert, update, delete = messages[1], messages[2], messages[5], messages[8]
    assert [c.name for c in relation.columns] == ["id", "note", "at", "ok"] and relation.columns[0].is_key
    assert insert.new[1] == "ab" * 1500 and insert.new[2] == "2026-03-01 00:00:00.5+00" and insert.new[3] is None
    assert update.new == ("1", po.UNCHANGED, "2026-03-01 00:00:00.5+00", "t")  # the TOASTed note not sent
    assert delete.old == ("1", None, None, None) and delete.old_kind == "K"
    commits = [m for m in messages if isinstance(m, po.Commit)]
    assert [c.end_lsn for c in commits] == sorted(c.end_lsn for c in commits)


def test_a_captured_row_becomes_row_to_json_text():
    relation, insert = po.decode(CAPTURED[1]), po.decode(CAPTURED[2])
    assert row_json(relation.columns, insert.new) == (
        '{"id":1,"note":"' + "ab" * 1500 + '","at":"2026-03-01T00:00:00.5+00:00","ok":null}')


def test_values_are_written_as_row_to_json_writes_them():
    assert json_value(16, "t") == "true" and json_value(20, "-12") == "-12" and json_value(1700, "NaN") == '"NaN"'
    assert json_value(1184, "2026-03-01 05:30:00+05:30") == '"2026-03-01T05:30:00+05:30"'
    assert json_value(1184, "infinity") == '"infinity"' and json_value(1114, "2026-03-01 00:00:00") == \
        '"2026-03-01T00:00:00"'
    assert json_value(25, 'a "q"\n\x01') == '"a \\"q\\"\\n\\u0001"'


def test_a_value_left_unchanged_must_be_carried_before_the_row_is_written():
    with pytest.raises(ValueError, match="note: unchanged TOAST value"):
        row_json(po.decode(CAPTURED[1]).columns, ("1", po.UNCHANGED, None, "t"))
