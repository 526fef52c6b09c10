"""An id range's SQL (eventlog/account_range.AccountRange.where): exactly the ids it names, whatever
they hold, and cheap to compose for a backfill task's many ids."""

from __future__ import annotations

import tracemalloc

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from eventlog.account_range import AccountRange
from simulation.harness.databases import scratch_databases

pytestmark = pytest.mark.integration

# text as PostgreSQL holds it: no NUL
ids = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12)


@pytest.fixture(scope="module")
def conn():
    with scratch_databases("eventstore") as dsns, psycopg.connect(dsns["eventstore"], autocommit=True) as conn:
        yield conn


@settings(max_examples=150, deadline=None)
@given(named=st.lists(ids, max_size=6, unique=True), others=st.lists(ids, max_size=6, unique=True))
def test_an_id_range_holds_exactly_the_ids_it_names_whatever_they_hold(conn, named, others):
    candidates = sorted(set(named) | set(others))
    query = sql.SQL("SELECT x FROM unnest({}::text[]) x WHERE {}").format(
        sql.Literal(candidates), AccountRange(ids=tuple(named)).where("x", collate=False))
    found = {row[0] for row in conn.execute(query)}
    assert found == set(named)
    assert found == {c for c in candidates if AccountRange(ids=tuple(named)).holds(c)}


def test_composing_a_range_of_many_ids_holds_about_their_text_not_an_object_per_id(conn):
    many = tuple(f"acc_{i:06d}" for i in range(150_000))  # a backfill task's share of 300,000 accounts
    tracemalloc.start()
    try:
        text = AccountRange(ids=many).where("originator_id").as_string(conn)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6 * len(text), f"composing {len(text):,} bytes of SQL peaked at {peak:,} bytes"
