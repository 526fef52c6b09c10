"""The legacy stores' tables, exactly as `spec/legacy-stores.md` (contract v1) writes them.

`create_legacy_schema(conn, store)` drops and recreates one store's tables in the database that
`conn` is connected to. `LEGACY_COLUMNS` lists each table's columns in contract order; the fleet
loader uses it for its COPY statements and the tests compare it with `information_schema`.
"""

from __future__ import annotations

from typing import Literal

import psycopg

Store = Literal["cf_prod", "billing_prod", "subs"]

DDL: dict[str, tuple[str, ...]] = {
    "cf_prod": (
        """CREATE TABLE accounts (
            account_id text PRIMARY KEY,
            name text NOT NULL,
            plan text NOT NULL,
            status text NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL)""",
        """CREATE TABLE product_config (
            plan text,
            feature text,
            PRIMARY KEY (plan, feature))""",
        """CREATE TABLE entitlements (
            account_id text,
            feature text,
            enabled boolean NOT NULL,
            source text NOT NULL,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (account_id, feature))""",
    ),
    "billing_prod": (
        """CREATE TABLE invoices (
            invoice_id text PRIMARY KEY,
            account_id text NOT NULL,
            stripe_invoice_id text UNIQUE,
            status text NOT NULL,
            currency char(3) NOT NULL,
            amount_due bigint NOT NULL,
            amount_paid bigint NOT NULL,
            due_at timestamptz,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL)""",
        """CREATE TABLE charges (
            charge_id text PRIMARY KEY,
            account_id text NOT NULL,
            invoice_id text,
            stripe_charge_id text,
            amount bigint NOT NULL,
            status text NOT NULL,
            failure_code text,
            created_at timestamptz NOT NULL)""",
        """CREATE TABLE dunning (
            account_id text PRIMARY KEY,
            stage text NOT NULL,
            stage_since timestamptz,
            updated_at timestamptz NOT NULL)""",
        """CREATE TABLE schedules (
            invoice_id text,
            attempt integer,
            account_id text NOT NULL,
            scheduled_at timestamptz NOT NULL,
            status text NOT NULL,
            PRIMARY KEY (invoice_id, attempt))""",
    ),
    "subs": (
        """CREATE TABLE subs_account (
            account_id text PRIMARY KEY,
            billing_email text,
            country char(2),
            currency char(3),
            payment_method text,
            bad_debt boolean NOT NULL DEFAULT false,
            delinquent boolean NOT NULL DEFAULT false,
            updated_at timestamptz NOT NULL)""",
        """CREATE TABLE subs_customer (
            id bigserial PRIMARY KEY,
            account_id text NOT NULL,
            stripe_customer_id text NOT NULL,
            source text NOT NULL,
            created_at timestamptz NOT NULL)""",
        """CREATE TABLE subs_dunning (
            account_id text PRIMARY KEY,
            stage text NOT NULL,
            attempt_count integer NOT NULL,
            next_action_at timestamptz,
            updated_at timestamptz NOT NULL)""",
        """CREATE TABLE subs_subscription (
            account_id text PRIMARY KEY,
            stripe_subscription_id text,
            status text NOT NULL,
            current_period_end timestamptz,
            updated_at timestamptz NOT NULL)""",
        """CREATE TABLE subs_invoice (
            stripe_invoice_id text PRIMARY KEY,
            account_id text NOT NULL,
            status text NOT NULL,
            amount_remaining bigint NOT NULL,
            attempt_count integer NOT NULL,
            updated_at timestamptz NOT NULL)""",
    ),
}

LEGACY_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "cf_prod": {
        "accounts": ("account_id", "name", "plan", "status", "created_at", "updated_at"),
        "product_config": ("plan", "feature"),
        "entitlements": ("account_id", "feature", "enabled", "source", "updated_at"),
    },
    "billing_prod": {
        "invoices": (
            "invoice_id", "account_id", "stripe_invoice_id", "status", "currency",
            "amount_due", "amount_paid", "due_at", "created_at", "updated_at",
        ),
        "charges": (
            "charge_id", "account_id", "invoice_id", "stripe_charge_id", "amount", "status",
            "failure_code", "created_at",
        ),
        "dunning": ("account_id", "stage", "stage_since", "updated_at"),
        "schedules": ("invoice_id", "attempt", "account_id", "scheduled_at", "status"),
    },
    "subs": {
        "subs_account": (
            "account_id", "billing_email", "country", "currency", "payment_method",
            "bad_debt", "delinquent", "updated_at",
        ),
        "subs_customer": ("id", "account_id", "stripe_customer_id", "source", "created_at"),
        "subs_dunning": ("account_id", "stage", "attempt_count", "next_action_at", "updated_at"),
        "subs_subscription": (
            "account_id", "stripe_subscription_id", "status", "current_period_end", "updated_at",
        ),
        "subs_invoice": (
            "stripe_invoice_id", "account_id", "status", "amount_remaining", "attempt_count",
            "updated_at",
        ),
    },
}


def create_legacy_schema(conn: psycopg.Connection, store: Store) -> None:
    """Drop and recreate `store`'s tables (in the database `conn` points at), then commit."""
    if store not in DDL:
        raise ValueError(f"unknown legacy store {store!r}: expected one of {sorted(DDL)}")
    with conn.cursor() as cur:
        for table in LEGACY_COLUMNS[store]:
            cur.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
        for statement in DDL[store]:
            cur.execute(statement)
    conn.commit()
