"""PostgreSQL clusters the tests start themselves, so no test depends on the shared server's settings
or is allowed to restart it: pytest-postgresql's executor (initdb and pg_ctl from `pg_config --bindir`,
through `tests/support/pg_ctl`, which runs them as `postgres` when the tests run as root), trust
auth, a free port, a directory of its own that goes with it.

    a_cluster(**settings) -> Cluster        started, stopped and removed at the end of the block
    cluster.server                          "host=127.0.0.1 port=N user=postgres" (what scratch_databases takes)
    cluster.restart(mode) / stop(mode) / start()     pg_ctl -m fast|immediate, as an operator would

conftest.py has the two uses: `logical_server` (one per session, `wal_level = logical` with slots and
WAL senders to spare: every change-stream test's databases are made there) and `private_cluster`
(one per test that restarts, stops or breaks its server).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import port_for
import psycopg
from pytest_postgresql.executors import PostgreSQLExecutor

PG_CTL = str(Path(__file__).with_name("pg_ctl"))
HOST = "127.0.0.1"
# Speed over durability: a test cluster survives its server's crash (WAL replay), not the machine's.
QUICK = {"fsync": "off", "full_page_writes": "off"}  # commits stay synchronous: the streams read to the flush LSN
LOGICAL = {"wal_level": "logical", "max_replication_slots": "64", "max_wal_senders": "64"}


class Cluster:
    def __init__(self, executor: PostgreSQLExecutor, base: Path) -> None:
        self.executor = executor
        self.base = base
        self.port = executor.port

    @property
    def server(self) -> str:
        return f"host={HOST} port={self.port} user=postgres"

    def dsn(self, database: str = "postgres") -> str:
        return f"{self.server} dbname={database}"

    def wait_ready(self, within_s: float = 60.0) -> None:
        deadline = time.monotonic() + within_s
        while True:
            try:
                psycopg.connect(self.dsn(), connect_timeout=5).close()
                return
            except psycopg.OperationalError:  # "the database system is starting up"
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def pg_ctl(self, *args: str) -> None:
        subprocess.run([PG_CTL, *args, "-D", self.executor.datadir], check=True, capture_output=True, timeout=60)

    def restart(self, mode: str = "fast") -> None:
        """`pg_ctl restart -m fast|immediate`: sessions are ended (immediate: no checkpoint, crash
        recovery at start), the server is back on the same port with the same options."""
        self.pg_ctl("restart", "-w", "-m", mode, "-l", self.executor.logfile)

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("stop", "-w", "-m", mode)

    def start(self) -> None:
        self.pg_ctl("start", "-w", "-l", self.executor.logfile)


@contextmanager
def a_cluster(**settings: str) -> Iterator[Cluster]:
    base = Path(tempfile.mkdtemp(prefix="recompute-pg-"))
    if os.geteuid() == 0:  # the server runs as postgres (tests/support/pg_ctl)
        entry = pwd.getpwnam("postgres")
        os.chown(base, entry.pw_uid, entry.pw_gid)
    options = " ".join(f"-c {name}={value}" for name, value in {**QUICK, **settings}.items())
    executor = PostgreSQLExecutor(executable=PG_CTL, host=HOST, port=port_for.select_random(), datadir=str(base / "data"),
                                  unixsocketdir=str(base), logfile=str(base / "postgresql.log"), startparams="-w",
                                  dbname="postgres", postgres_options=options)
    try:
        executor.start()  # returns once the port answers, maybe before the server takes sessions
        cluster = Cluster(executor, base)
        cluster.wait_ready()
        yield cluster
    finally:
        try:
            if executor.running():
                executor.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)
