"""What the connecting role may do on a legacy store's tables, as the server says: one query a store.

    observe(conn, store) -> (Observed, streams)   the role's privileges on every table of the catalogue
                                                  present, and whether the store has a change stream
                                                  (its slot exists): domain/privileges.py judges them
"""

from __future__ import annotations

import psycopg

from domain.privileges import Observed, TablePrivileges, needs
from ingestion.legacy.cdc.names import slot_name

_QUERY = """
WITH t AS (
    SELECT c.oid, c.relname, c.relowner, to_regclass(n.seq) AS seq
      FROM unnest(%(tables)s::text[], %(sequences)s::text[]) AS n(name, seq) JOIN pg_class c ON c.oid = to_regclass(n.name)
)
SELECT r.rolname, r.rolsuper, r.rolreplication,
       EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = %(slot)s) AS streams,
       t.relname, pg_has_role(t.relowner, 'USAGE') AS owner,
       has_table_privilege(t.oid, 'SELECT'), has_table_privilege(t.oid, 'DELETE'),
       coalesce(array_agg(a.attname::text ORDER BY a.attnum)
                FILTER (WHERE has_column_privilege(t.oid, a.attnum, 'UPDATE')), '{}'),
       coalesce(array_agg(a.attname::text ORDER BY a.attnum)
                FILTER (WHERE has_column_privilege(t.oid, a.attnum, 'INSERT')), '{}'),
       t.seq IS NULL OR has_sequence_privilege(t.seq, 'USAGE')
  FROM pg_roles r
  LEFT JOIN t ON true
  LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE r.rolname = current_user
 GROUP BY r.rolname, r.rolsuper, r.rolreplication, t.oid, t.relname, t.relowner, t.seq
"""


def observe(conn: psycopg.Connection, store: str) -> tuple[Observed, bool]:
    needed = needs(store)
    rows = conn.execute(_QUERY, {"tables": [n.name for n in needed], "sequences": [n.sequence for n in needed],
                                 "slot": slot_name(conn.info.dbname)}).fetchall()
    role, superuser, replication, streams = rows[0][:4]
    tables = {name: TablePrivileges(owner=owner, select=select, delete=delete, update=frozenset(update),
                                    insert=frozenset(insert), sequence=sequence)
              for _, _, _, _, name, owner, select, delete, update, insert, sequence in rows if name is not None}
    return Observed(role=role, superuser=superuser, replication=replication, tables=tables), streams
