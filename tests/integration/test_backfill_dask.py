"""`backfill` on a real Dask scheduler and two `dask worker` processes on loopback (distributed's CLI),
one of which is SIGKILLed mid-run: its partitions run again on the other, and the report and the
generation are those of a run on one process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.e2e.test_backfill_fleet import RULES_V2
from tests.support.fleet import FLEET_NOW, ROOT, a_fleet

pytestmark = pytest.mark.integration
DASK = str(Path(sys.executable).parent / "dask")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def built(fleet) -> tuple[int, int]:
    """(partitions, states) of the pending generation."""
    with psycopg.connect(fleet.dsns["eventstore"]) as conn:
        return conn.execute("SELECT (SELECT count(*) FROM read_model_partition), "
                            "(SELECT count(*) FROM read_model_state)").fetchone()


def test_a_worker_killed_mid_backfill_costs_a_rerun_of_its_partitions_not_a_different_result(tmp_path):
    rules_file = tmp_path / "v2.toml"
    rules_file.write_text(RULES_V2)
    args = ("backfill", "--rules", str(rules_file), "--as-of", FLEET_NOW.isoformat(), "--json")
    with a_fleet(tmp_path, accounts=600, drifting=40) as fleet:
        alone = json.loads(fleet.recompute(*args, "--workers", "1").stdout)
        states_alone = built(fleet)
        with psycopg.connect(fleet.dsns["eventstore"]) as conn:
            conn.execute("DELETE FROM read_model_generation")  # so the next run builds, not resumes

        port = free_port()
        address = f"tcp://127.0.0.1:{port}"
        env = {**fleet.env, "PYTHONPATH": str(ROOT)}
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        scheduler = subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                      "--no-dashboard"], env=env, **quiet)
        workers = [subprocess.Popen([DASK, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                                     "--name", f"w{i}"], env=env, cwd=ROOT, **quiet) for i in range(2)]
        try:
            # four tasks of eight partitions on the two workers: each commits its partitions at once,
            # so with two tasks (one a worker) both often committed within one poll of the count and
            # the kill came after all 32 were built; with four, worker 0 is still in its second task
            run = subprocess.Popen([sys.executable, "-c", "from recompute.cli import main; main()", *args,
                                    "--workers", "4"],
                                   env={**env, "RECOMPUTE_DASK_SCHEDULER": address}, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
            done_at_kill = 0
            while run.poll() is None and done_at_kill == 0:
                done_at_kill = built(fleet)[0] if _has_tables(fleet) else 0
                time.sleep(0.005)
            workers[0].kill()
            out, err = run.communicate(timeout=300)
        finally:
            for process in (*workers, scheduler):
                process.kill()
                process.wait()
        assert run.returncode == 0, err
        assert 0 < done_at_kill < 32, f"the worker was killed with {done_at_kill} of 32 partitions built"
        assert workers[0].returncode == -9
        assert json.loads(out) == alone
        assert built(fleet) == states_alone


def _has_tables(fleet) -> bool:
    with psycopg.connect(fleet.dsns["eventstore"]) as conn:
        return conn.execute("SELECT to_regclass('read_model_partition') IS NOT NULL").fetchone()[0]
