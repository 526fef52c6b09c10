"""Least privilege (cli.md "Least privilege"): what a role needs on each legacy store, and what a
role has against that. Pure, derived from the catalogue (domain/legacy_tables.py), nothing else.

    needs(store) -> [TableNeeds]              SELECT on every table read; UPDATE on exactly the columns
                                              rules-v1 §3 writes (with the bookkeeping and the stamp);
                                              INSERT on the columns of a new row; DELETE where §3 deletes
    grants_sql(role, store) -> str            the SQL that gives a role exactly that
    findings(store, observed, streams) -> [Finding]
                                              what a role lacks (errors) and may do beyond it (warnings)

A column grant protects columns, not rows: which rows an UPDATE touches (a manual entitlement is
never written) is the compare-and-set statement's WHERE (projections/apply/cas_sql.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from domain.legacy_tables import TABLES_BY_STORE, LegacyTable

Level = Literal["error", "warning"]


@dataclass(frozen=True)
class TableNeeds:
    table: LegacyTable
    update: tuple[str, ...] = ()
    insert: tuple[str, ...] = ()
    delete: bool = False
    sequence: str | None = None  # the sequence a new row's key comes from (USAGE)

    @property
    def name(self) -> str:
        return self.table.table


def needs(store: str) -> tuple[TableNeeds, ...]:
    found = []
    for spec in TABLES_BY_STORE[store]:
        c = spec.correctable
        if c is None:
            found.append(TableNeeds(spec))
            continue
        update = (*c.compared, *c.bookkeeping, *((c.stamp,) if c.stamp else ()))
        insert: tuple[str, ...] = ()
        if c.insert:
            key = () if c.key_assigned else spec.key
            insert = tuple(dict.fromkeys((*key, *c.identity, *c.compared, *c.bookkeeping, c.new_row_stamp)))
        sequence = f"{spec.table}_{spec.key[0]}_seq" if c.insert and c.key_assigned else None
        found.append(TableNeeds(spec, update, insert, c.delete, sequence))
    return tuple(found)


def grants_sql(role: str, store: str, database: str | None = None) -> str:
    """Run by the tables' owner (or a superuser) in the store's database; idempotent."""
    r = quote_ident(role)
    where = f"database {database}" if database else f"the {store} database"
    lines = [f"-- {store}: run as the tables' owner in {where}",
             f"GRANT USAGE ON SCHEMA public TO {r};"]
    for n in needs(store):
        lines.append(f"GRANT SELECT ON {n.name} TO {r};")
        if n.update:
            lines.append(f"GRANT UPDATE ({', '.join(n.update)}) ON {n.name} TO {r};")
        if n.insert:
            lines.append(f"GRANT INSERT ({', '.join(n.insert)}) ON {n.name} TO {r};")
        if n.sequence:
            lines.append(f"GRANT USAGE ON SEQUENCE {n.sequence} TO {r};")
        if n.delete:
            lines.append(f"GRANT DELETE ON {n.name} TO {r};")
    lines.append("-- for a change stream (`cdc setup`, `project`): a role attribute, set by a superuser")
    lines.append(f"ALTER ROLE {r} REPLICATION;")
    return "\n".join(lines)


def quote_ident(name: str) -> str:
    return name if name.isidentifier() and name.islower() else '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class TablePrivileges:
    """What the role may do on one table, as the server says (has_*_privilege)."""

    owner: bool = False
    select: bool = False
    delete: bool = False
    update: frozenset[str] = frozenset()  # columns
    insert: frozenset[str] = frozenset()
    sequence: bool = True  # USAGE on the key's sequence (True when there is none to check)


@dataclass(frozen=True)
class Observed:
    role: str
    superuser: bool = False
    replication: bool = False
    tables: Mapping[str, TablePrivileges] = field(default_factory=dict)  # tables present, by name


@dataclass(frozen=True)
class Finding:
    level: Level
    text: str

    def line(self, prefix: str = "") -> str:
        return f"{self.level}: {prefix}{self.text}"


def findings(store: str, observed: Observed, *, streams: bool) -> list[Finding]:
    """Errors: what `observed.role` lacks for the commands (REPLICATION only when the store has a
    change stream); warnings: what it may do beyond them (a table it owns, a superuser: anything)."""
    role, found = observed.role, []
    if observed.superuser:
        found.append(Finding("warning", f"role {role} is a superuser: it may write anything, "
                                        f"run `recompute grants --role NAME` for a role that may not"))
    if streams and not observed.replication and not observed.superuser:
        found.append(Finding("error", f"role {role} lacks the REPLICATION attribute its change stream needs "
                                      f"(ALTER ROLE {quote_ident(role)} REPLICATION)"))
    for n in needs(store):
        where = f"{store}.{n.name}"
        has = observed.tables.get(n.name)
        if has is None:
            found.append(Finding("error", f"{where}: no such table (legacy-stores.md names it)"))
            continue
        lacking = [*(["SELECT"] if not has.select else []),
                   *([f"UPDATE ({', '.join(c for c in n.update if c not in has.update)})"]
                     if set(n.update) - has.update else []),
                   *([f"INSERT ({', '.join(c for c in n.insert if c not in has.insert)})"]
                     if set(n.insert) - has.insert else []),
                   *(["DELETE"] if n.delete and not has.delete else []),
                   *([f"USAGE ON SEQUENCE {n.sequence}"] if n.sequence and not has.sequence else [])]
        if lacking:
            found.append(Finding("error", f"{where}: role {role} lacks {', '.join(lacking)}"))
        if observed.superuser:
            continue
        if has.owner:
            found.append(Finding("warning", f"{where}: role {role} owns the table: it may write any column"))
            continue
        extra = [*([f"UPDATE ({', '.join(sorted(has.update - set(n.update)))})"] if has.update - set(n.update) else []),
                 *([f"INSERT ({', '.join(sorted(has.insert - set(n.insert)))})"] if has.insert - set(n.insert) else []),
                 *(["DELETE"] if has.delete and not n.delete else [])]
        if extra:
            found.append(Finding("warning", f"{where}: role {role} may {', '.join(extra)}, which recompute never "
                                            "writes"))
    return found

