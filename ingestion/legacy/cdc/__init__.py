"""Change streams of the legacy PostgreSQL stores: logical replication (pgoutput) read over psycopg 3's pq layer."""
