"""Builders for legacy rows, with memorable defaults. Every timestamp is 2026-03-01 unless said."""

from __future__ import annotations

import psycopg

from simulation.legacy_schema import create_legacy_schema

T0 = "2026-03-01T00:00:00+00:00"


def create_stores(dsns: dict[str, str]) -> None:
    for store in ("cf_prod", "billing_prod", "subs"):
        with psycopg.connect(dsns[store]) as conn:
            create_legacy_schema(conn, store)


def execute(dsn: str, statement: str, params: tuple = ()) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(statement, params)


def an_account(dsns: dict[str, str], account_id: str = "acc_000042", *, plan: str = "pro",
               status: str = "active") -> str:
    execute(dsns["cf_prod"], "INSERT INTO accounts VALUES (%s, 'Acme', %s, %s, %s, %s)",
            (account_id, plan, status, T0, T0))
    return account_id


def an_invoice(dsns: dict[str, str], invoice_id: str = "inv_000042_01", *, account_id: str = "acc_000042",
               status: str = "open", amount_due: int = 2900, amount_paid: int = 0,
               due_at: str | None = "2026-02-20T00:00:00+00:00", stripe_invoice_id: str | None = None,
               updated_at: str = T0) -> str:
    execute(dsns["billing_prod"],
            "INSERT INTO invoices VALUES (%s, %s, %s, %s, 'usd', %s, %s, %s, %s, %s)",
            (invoice_id, account_id, stripe_invoice_id, status, amount_due, amount_paid, due_at, T0, updated_at))
    return invoice_id


def a_plan(dsns: dict[str, str], plan: str = "pro", features: tuple[str, ...] = ("api", "sso")) -> None:
    for feature in features:
        execute(dsns["cf_prod"], "INSERT INTO product_config VALUES (%s, %s)", (plan, feature))


def a_customer_mapping(dsns: dict[str, str], account_id: str = "acc_000042", customer: str = "cus_42",
                       source: str = "setup") -> None:
    execute(dsns["subs"], "INSERT INTO subs_customer (account_id, stripe_customer_id, source, created_at) "
            "VALUES (%s, %s, %s, %s)", (account_id, customer, source, T0))


def an_entitlement(dsns: dict[str, str], feature: str, *, account_id: str = "acc_000042", enabled: bool = True,
                   source: str = "plan", updated_at: str = T0) -> None:
    execute(dsns["cf_prod"], "INSERT INTO entitlements VALUES (%s, %s, %s, %s, %s)",
            (account_id, feature, enabled, source, updated_at))


def a_dunning_row(dsns: dict[str, str], account_id: str = "acc_000042", *, stage: str = "none",
                  updated_at: str = T0) -> None:
    execute(dsns["billing_prod"], "INSERT INTO dunning VALUES (%s, %s, NULL, %s)", (account_id, stage, updated_at))
