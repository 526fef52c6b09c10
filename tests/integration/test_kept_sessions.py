"""A follower's read sessions kept across steps (eventlog/kept_sessions.py), on the real PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest

from eventlog.kept_sessions import KeptStores
from eventlog.stores import Stores

pytestmark = pytest.mark.integration


def backend(conn) -> int:
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def test_a_session_asked_again_with_the_same_purpose_and_settings_is_the_same_backend(stores):
    kept = KeptStores.keeping(Stores.from_dsns(stores))
    try:
        with kept.connect("subs", purpose="schema") as conn:
            first = backend(conn)
        with kept.connect("subs", purpose="schema") as conn:
            assert backend(conn) == first
        with kept.connect("subs", purpose="read subs") as conn:
            assert backend(conn) != first  # another purpose: another session (its settings are its own)
        assert kept.kept() == 2
    finally:
        kept.drop()
    assert kept.kept() == 0


def test_a_kept_session_ends_each_use_s_transaction_committed_or_rolled_back(stores):
    kept = KeptStores.keeping(Stores.from_dsns(stores))
    try:
        with kept.connect("subs") as conn:
            conn.execute("CREATE TABLE kept_probe (n int)")
            conn.execute("INSERT INTO kept_probe VALUES (1)")
        with pytest.raises(RuntimeError), kept.connect("subs") as conn:
            conn.execute("INSERT INTO kept_probe VALUES (2)")
            raise RuntimeError("the use failed")
        with psycopg.connect(stores["subs"]) as other:
            assert other.execute("SELECT array_agg(n) FROM kept_probe").fetchone()[0] == [1]
        with kept.connect("subs") as conn:
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    finally:
        kept.drop()


def test_a_kept_session_carries_the_idle_in_transaction_timeout_it_was_kept_with(stores):
    kept = KeptStores.keeping(Stores.from_dsns(stores), idle_in_transaction_timeout="3000ms")
    try:
        with kept.connect("billing_prod", purpose="schema") as conn:
            assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()[0] == "3s"
    finally:
        kept.drop()


def test_a_kept_session_the_server_ended_is_replaced_after_a_drop(stores):
    kept = KeptStores.keeping(Stores.from_dsns(stores))
    try:
        with kept.connect("subs", purpose="schema") as conn:
            gone = backend(conn)
        with psycopg.connect(stores["subs"], autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (gone,))
        with pytest.raises(psycopg.OperationalError), kept.connect("subs", purpose="schema") as conn:
            conn.execute("SELECT 1")
        kept.drop()
        with kept.connect("subs", purpose="schema") as conn:
            assert backend(conn) != gone
    finally:
        kept.drop()
