"""The one catalogue of the legacy stores and their tables (legacy-stores.md, rules-v1 §3). Pure data.

Per table: its store and name, key, the column naming the account, the time columns, the values the
row checks allow (ingestion/legacy/tables.py), and, for the tables rules-v1 §3 compares, a
`Correctable`: the compared columns (the only ones the projector ever writes), the bookkeeping
columns it sets with them, the identity columns a new row carries and what it may insert or delete
(projections/apply/cas_sql.py). `sql_types` gives the SQL type of every column the writer names.

`columns` is every column recompute keys, times, compares, reads or writes, with the PostgreSQL
type it reads exactly (pg_type.typname: what information_schema's `udt_name` and pgoutput's type
oids name) and whether legacy-stores.md has it NOT NULL. `schema_problems` checks a table's actual
columns against it (pure): a table with a problem is *blocked* (nothing of it is read or written)
until it matches again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

LegacyStore = Literal["cf_prod", "billing_prod", "subs"]
STORES: tuple[LegacyStore, ...] = get_args(LegacyStore)

INVOICE_STATUSES = frozenset({"draft", "open", "paid", "void", "uncollectible"})
DUNNING_STAGES = frozenset({"none", "grace", "retrying", "final_notice", "suspended"})
SUBSCRIPTION_STATUSES = frozenset({
    "incomplete", "incomplete_expired", "trialing", "active", "past_due", "unpaid", "canceled", "paused",
})


@dataclass(frozen=True)
class Correctable:
    """What rules-v1 §3 has the projector compare in a table's rows, and how it may write them."""

    compared: tuple[str, ...]  # the columns that must equal the true value: the only ones ever written
    bookkeeping: tuple[str, ...] = ()  # set with a write, never compared (stage_since, source)
    identity: tuple[str, ...] = ()  # a new row's other columns
    stamp: str | None = "updated_at"  # set to now() by every update (subs_customer has no such column)
    new_row_stamp: str = "updated_at"  # set to now() in an inserted row
    insert: bool = False
    delete: bool = False
    only: str | None = None  # rows an update may touch at all (SQL condition)
    key_assigned: bool = False  # the database assigns a new row's key (bigserial): an insert names none


@dataclass(frozen=True)
class Column:
    type: str  # pg_type.typname: text, bool, int4, int8, bpchar, timestamptz
    not_null: bool


TYPE_NAMES = {"bool": "boolean", "int4": "integer", "int8": "bigint", "bpchar": "character", "int2": "smallint",
              "float8": "double precision", "float4": "real", "varchar": "character varying",
              "timestamptz": "timestamp with time zone", "timestamp": "timestamp without time zone"}


def type_name(typname: str) -> str:
    """A pg_type.typname as SQL writes it (int8 -> bigint)."""
    return TYPE_NAMES.get(typname, typname)


def columns(text: str) -> dict[str, Column]:
    """'account_id text!, due_at timestamptz' -> the columns ('!': NOT NULL in legacy-stores.md)."""
    found = {}
    for item in text.split(","):
        name, typname = item.split()
        found[name] = Column(typname.rstrip("!"), typname.endswith("!"))
    return found


@dataclass(frozen=True)
class LegacyTable:
    store: LegacyStore
    table: str
    key: tuple[str, ...]
    account: str | None  # column naming the account; None: the row belongs to the catalog stream
    updated: str | None = None  # the column that moves on every change
    created: str | None = None
    statuses: Mapping[str, frozenset[str]] = field(default_factory=dict)  # column -> allowed values
    money: tuple[str, ...] = ()  # minor units, must be >= 0
    counts: tuple[str, ...] = ()  # must be >= 0
    required_times: tuple[str, ...] = ()
    optional_times: tuple[str, ...] = ()
    correctable: Correctable | None = None  # None: never compared, never written
    sql_types: Mapping[str, str] = field(default_factory=dict)  # the columns the writer names -> SQL type
    columns: Mapping[str, Column] = field(default_factory=dict)  # every column recompute uses -> type, NOT NULL

    @property
    def name(self) -> str:
        return f"{self.store}.{self.table}"

    @property
    def columns_with_time(self) -> tuple[str, ...]:
        return self.required_times + self.optional_times

    @property
    def columns_named(self) -> frozenset[str]:
        """Every column this entry names: a table without one of them is not the table legacy-stores.md describes."""
        named = (*self.key, self.account, self.updated, self.created, *self.statuses, *self.money, *self.counts,
                 *self.columns_with_time)
        return frozenset(column for column in named if column is not None)


_ACCOUNT = {"account_id": "text"}

TABLES: tuple[LegacyTable, ...] = (
    LegacyTable("cf_prod", "accounts", ("account_id",), "account_id", "updated_at", "created_at",
                statuses={"status": frozenset({"active", "suspended", "closed"})},
                required_times=("created_at", "updated_at"),
                correctable=Correctable(("status",)), sql_types={**_ACCOUNT, "status": "text"},
                columns=columns("account_id text!, plan text!, "
                                "status text!, created_at timestamptz!, updated_at timestamptz!")),
    LegacyTable("cf_prod", "product_config", ("plan", "feature"), None,
                columns=columns("plan text!, feature text!")),
    LegacyTable("cf_prod", "entitlements", ("account_id", "feature"), "account_id", "updated_at",
                statuses={"source": frozenset({"plan", "manual", "dunning"})}, required_times=("updated_at",),
                correctable=Correctable(("enabled",), bookkeeping=("source",), insert=True,
                                        only="source IS DISTINCT FROM 'manual'"),  # manual rows are never ours
                sql_types={**_ACCOUNT, "feature": "text", "enabled": "boolean", "source": "text"},
                columns=columns("account_id text!, feature text!, "
                                "enabled bool!, source text!, updated_at timestamptz!")),
    LegacyTable("billing_prod", "invoices", ("invoice_id",), "account_id", "updated_at", "created_at",
                statuses={"status": INVOICE_STATUSES}, money=("amount_due", "amount_paid"),
                required_times=("created_at", "updated_at"), optional_times=("due_at",),
                correctable=Correctable(("status", "amount_paid")),
                sql_types={"invoice_id": "text", "status": "text", "amount_paid": "bigint"},
                columns=columns("invoice_id text!, account_id text!, stripe_invoice_id text, status text!, "
                                "currency bpchar!, amount_due int8!, amount_paid int8!, due_at timestamptz, "
                                "created_at timestamptz!, updated_at timestamptz!")),
    LegacyTable("billing_prod", "charges", ("charge_id",), "account_id", None, "created_at",
                statuses={"status": frozenset({"pending", "succeeded", "failed", "refunded"})}, money=("amount",),
                required_times=("created_at",),
                columns=columns("charge_id text!, account_id text!, invoice_id text, "
                                "amount int8!, status text!, created_at timestamptz!")),
    LegacyTable("billing_prod", "dunning", ("account_id",), "account_id", "updated_at",
                statuses={"stage": DUNNING_STAGES}, required_times=("updated_at",), optional_times=("stage_since",),
                correctable=Correctable(("stage",), bookkeeping=("stage_since",), insert=True),
                sql_types={**_ACCOUNT, "stage": "text", "stage_since": "timestamptz"},
                columns=columns("account_id text!, stage text!, stage_since timestamptz, updated_at timestamptz!")),
    LegacyTable("billing_prod", "schedules", ("invoice_id", "attempt"), "account_id",
                statuses={"status": frozenset({"pending", "done", "cancelled"})}, counts=("attempt",),
                required_times=("scheduled_at",),
                columns=columns("invoice_id text!, attempt int4!, "
                                "account_id text!, scheduled_at timestamptz!, status text!")),
    LegacyTable("subs", "subs_account", ("account_id",), "account_id", "updated_at",
                required_times=("updated_at",),
                correctable=Correctable(("bad_debt", "delinquent")),
                sql_types={**_ACCOUNT, "bad_debt": "boolean", "delinquent": "boolean"},
                columns=columns("account_id text!, bad_debt bool!, delinquent bool!, updated_at timestamptz!")),
    LegacyTable("subs", "subs_customer", ("id",), "account_id", None, "created_at",
                required_times=("created_at",),
                correctable=Correctable(("stripe_customer_id",), identity=("account_id", "source"), stamp=None,
                                        new_row_stamp="created_at", insert=True, delete=True, key_assigned=True),
                sql_types={**_ACCOUNT, "id": "bigint", "stripe_customer_id": "text", "source": "text"},
                columns=columns("id int8!, account_id text!, "
                                "stripe_customer_id text!, source text!, created_at timestamptz!")),
    LegacyTable("subs", "subs_dunning", ("account_id",), "account_id", "updated_at",
                statuses={"stage": DUNNING_STAGES}, counts=("attempt_count",),
                required_times=("updated_at",), optional_times=("next_action_at",),
                correctable=Correctable(("stage", "attempt_count", "next_action_at"), insert=True),
                sql_types={**_ACCOUNT, "stage": "text", "attempt_count": "integer",
                           "next_action_at": "timestamptz"},
                columns=columns("account_id text!, stage text!, "
                                "attempt_count int4!, next_action_at timestamptz, updated_at timestamptz!")),
    LegacyTable("subs", "subs_subscription", ("account_id",), "account_id", "updated_at",
                statuses={"status": SUBSCRIPTION_STATUSES}, required_times=("updated_at",),
                optional_times=("current_period_end",),
                correctable=Correctable(("status", "stripe_subscription_id", "current_period_end"), insert=True),
                sql_types={**_ACCOUNT, "status": "text", "stripe_subscription_id": "text",
                           "current_period_end": "timestamptz"},
                columns=columns("account_id text!, stripe_subscription_id text, "
                                "status text!, current_period_end timestamptz, updated_at timestamptz!")),
    LegacyTable("subs", "subs_invoice", ("stripe_invoice_id",), "account_id", "updated_at",
                statuses={"status": INVOICE_STATUSES}, money=("amount_remaining",), counts=("attempt_count",),
                required_times=("updated_at",),
                correctable=Correctable(("status", "amount_remaining", "attempt_count"), identity=("account_id",),
                                        insert=True),
                sql_types={**_ACCOUNT, "stripe_invoice_id": "text", "status": "text", "amount_remaining": "bigint",
                           "attempt_count": "integer"},
                columns=columns("stripe_invoice_id text!, account_id text!, status text!, "
                                "amount_remaining int8!, attempt_count int4!, updated_at timestamptz!")),
)
BY_NAME: dict[str, LegacyTable] = {spec.name: spec for spec in TABLES}
TABLES_BY_STORE: dict[str, tuple[LegacyTable, ...]] = {
    store: tuple(spec for spec in TABLES if spec.store == store) for store in STORES
}

# The tables rules-v1 §3 compares, in the order a plan lists their corrections (cli.md output order).
CORRECTION_ORDER: tuple[str, ...] = (
    "billing_prod.invoices", "subs.subs_invoice", "billing_prod.dunning", "subs.subs_dunning", "subs.subs_account",
    "subs.subs_subscription", "subs.subs_customer", "cf_prod.accounts", "cf_prod.entitlements",
)
COMPARED: tuple[LegacyTable, ...] = tuple(spec for spec in TABLES if spec.correctable is not None)
COMPARED_BY_STORE: dict[str, tuple[str, ...]] = {
    store: tuple(spec.table for spec in COMPARED if spec.store == store) for store in STORES
}


def correctable(spec: LegacyTable) -> Correctable:
    if spec.correctable is None:
        raise ValueError(f"{spec.name}: not a table rules-v1 §3 compares")
    return spec.correctable


def schema_problems(spec: LegacyTable, found: Mapping[str, str]) -> list[str]:
    """Pure: why the table's actual columns (`found`: name -> pg_type.typname) are not the ones
    recompute reads exactly, one line per column, e.g. 'delinquent: no such column',
    'amount_paid: numeric, expected bigint'; [] when they are."""
    problems = []
    for name, column in spec.columns.items():
        actual = found.get(name)
        if actual is None:
            problems.append(f"{name}: no such column")
        elif actual != column.type:
            problems.append(f"{name}: {type_name(actual)}, expected {type_name(column.type)}")
    return problems


def _check() -> None:
    """The catalogue agrees with itself; a mistake here fails at import, before anything reads a store."""
    if sorted(CORRECTION_ORDER) != sorted(spec.name for spec in COMPARED):  # pragma: no cover
        raise ImportError("legacy_tables.CORRECTION_ORDER must name exactly the compared tables")
    for spec in COMPARED:
        c = correctable(spec)
        if missing := {*spec.key, *c.compared, *c.bookkeeping, *c.identity} - set(spec.sql_types):  # pragma: no cover
            raise ImportError(f"legacy_tables: {spec.name} has no SQL type for {', '.join(sorted(missing))}")
    for spec in TABLES:
        if unknown := spec.columns_named - set(spec.columns):  # pragma: no cover
            raise ImportError(f"legacy_tables: {spec.name} names {', '.join(sorted(unknown))} outside its columns")
        types = {c: (spec.columns[c].type, type_name(spec.columns[c].type)) for c in spec.sql_types}
        if wrong := sorted(c for c, t in spec.sql_types.items() if t not in types[c]):  # pragma: no cover
            raise ImportError(f"legacy_tables: {spec.name}: sql_types of {', '.join(wrong)} disagree with columns")


_check()
