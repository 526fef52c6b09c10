"""`Stores` for tests that have only some of the databases (an event store alone, for Stripe's ingest)."""

from __future__ import annotations

from eventlog.stores import Stores


def eventstore_only(dsn: str) -> Stores:
    """The legacy stores left unset: a test that reaches one fails on the empty connection string's default."""
    return Stores(cf_prod="", billing_prod="", subs="", eventstore=dsn)
