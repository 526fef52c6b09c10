"""What a DDL script makes, read from it: what ensure_* compare with the catalog before running it,
so a follower joining running ones locks nothing (issue 17, defect 8)."""

from __future__ import annotations

from eventlog.tables_present import ddl_objects
from projections.follow.leases import DDL as LEASES
from projections.read_model.tables import DDL as READ_MODEL


def test_tables_indexes_and_added_columns_are_read_from_the_ddl_comments_and_all():
    relations, columns = ddl_objects("""
        CREATE TABLE IF NOT EXISTS t (a int);
        CREATE UNIQUE INDEX IF NOT EXISTS t_a ON t (a) WHERE a > 0;
        ALTER TABLE t ADD COLUMN IF NOT EXISTS b text,   -- a comment, with a comma
            ADD COLUMN IF NOT EXISTS c bytea;
        ALTER TABLE u ADD COLUMN IF NOT EXISTS d timestamptz;
    """)
    assert relations == ["t", "t_a"] and columns == [("t", "b"), ("t", "c"), ("u", "d")]


def test_the_read_models_ddl_names_every_table_index_and_later_column():
    relations, columns = ddl_objects(READ_MODEL)
    assert {"read_model_facts", "read_model_state", "read_model_state_timer"} <= set(relations)
    assert ("read_model_facts", "decided_rows_digest") in columns and ("read_model_partition", "report") in columns
    assert ddl_objects(LEASES) == (["follow_lease", "follow_member"], [])
