"""Ingesting the legacy stores: snapshots of their tables, and what is known of each table."""
