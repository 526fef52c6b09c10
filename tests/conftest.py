from __future__ import annotations

import fcntl
import inspect
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from simulation.harness.apply_fleet import a_drifting_fleet
from simulation.harness.databases import STORES, scratch_databases
from tests.support.clusters import LOGICAL, a_cluster
from tests.support.fleet import a_fleet

CHANGE_STREAM_CODE = ("ingestion.legacy.cdc", "tests.support.cdc")


@pytest.fixture(scope="session")
def logical_server():
    """The suite's own cluster at `wal_level = logical` (tests/support/clusters.py), started at its
    first use: where the change-stream tests make their databases, whatever the shared server's
    settings are."""
    with a_cluster(**LOGICAL) as cluster:
        yield cluster.server

pytest_plugins = ["tests.support.markers"]


@pytest.fixture
def stores(request):
    """Empty cf_prod, billing_prod, subs and event store databases on the real PostgreSQL; for a test
    marked `logical` (every test of a module that uses the change-stream code is), on the suite's
    logical cluster."""
    if request.node.get_closest_marker("logical"):
        with scratch_databases(*STORES, server=request.getfixturevalue("logical_server")) as dsns:
            yield dsns
    else:
        with scratch_databases(*STORES) as dsns:
            yield dsns


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """The quick loop (`-m "not db"`) runs in one process: its tests take less time than starting the
    workers of `-n` (pyproject.toml's addopts) does."""
    if config.option.markexpr.replace("'", '"').strip() == "not db":
        config.option.numprocesses = 0


@pytest.fixture(autouse=True)
def _alone_when_marked(request):
    """Under pytest-xdist, a test marked `alone` (it stops RabbitMQ, which the others use) runs while
    no other test does: each test holds a shared lock on one file of the run, an `alone` one the
    exclusive lock. Without workers there is nothing to wait for."""
    run = getattr(request.config, "workerinput", {}).get("testrunuid")
    if run is None:
        yield
        return
    with open(Path(tempfile.gettempdir()) / f"recompute-tests-{run}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if request.node.get_closest_marker("alone") else fcntl.LOCK_SH)
        yield


@pytest.fixture
def fleet(request, tmp_path):
    """The fleet a test works on, ingested. By default `drifting`: 120 accounts of which 25 drift
    (seed 7, simulation/harness/apply_fleet.py), a fresh one for each test (apply changes it). A module
    says otherwise with `pytestmark = pytest.mark.fleet(...)`: `kind="served"` is 300 accounts of which
    40 drift (seed 11), ingested through the CLI against the Stripe stand-in, which keeps serving
    (tests/support/fleet.py), one for the module; `shared=True` makes one fleet for the module's
    tests; `accounts=`, `drifting=` change the sizes."""
    kind, shared, sizes = _fleet_wanted(request.node)
    if shared:
        yield request.getfixturevalue("module_fleet")
    else:
        with _a_fleet(kind, sizes, tmp_path) as built:
            yield built


@pytest.fixture(scope="module")
def module_fleet(request, tmp_path_factory):
    """The one fleet of a module marked `fleet(shared=True)` (or `kind="served"`): see `fleet`."""
    kind, _, sizes = _fleet_wanted(request.node)
    with _a_fleet(kind, sizes, tmp_path_factory.mktemp("fleet")) as built:
        yield built


FLEETS = {"drifting": {"accounts": 120, "drifting": 25}, "served": {"accounts": 300, "drifting": 40}}


def _fleet_wanted(node: pytest.Item | pytest.Collector) -> tuple[str, bool, dict[str, int]]:
    marker = node.get_closest_marker("fleet")
    wanted = dict(marker.kwargs) if marker else {}
    kind = wanted.pop("kind", "drifting")
    shared = wanted.pop("shared", kind == "served")
    return kind, shared, {**FLEETS[kind], **wanted}


@contextmanager
def _a_fleet(kind: str, sizes: dict[str, int], tmp: Path) -> Iterator[object]:
    if kind == "served":
        with a_fleet(tmp, **sizes) as built:
            yield built
    else:
        with scratch_databases(*STORES) as dsns:
            yield a_drifting_fleet(dsns, tmp, **sizes)


@pytest.fixture
def private_cluster():
    """A cluster of this test's own (`wal_level = logical`), to restart, stop or break."""
    with a_cluster(**LOGICAL) as cluster:
        yield cluster


def pytest_collection_modifyitems(items):
    """Marks `logical` every test of a module that imports the change streams' code or their test
    helpers (tests/support/cdc.py), so a new change-stream test runs on the logical cluster too. A
    test that only runs `recompute cdc setup` as a process says so itself: @pytest.mark.logical."""
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and _uses_change_streams(module):
            item.add_marker(pytest.mark.logical)


def _uses_change_streams(module) -> bool:
    for value in vars(module).values():
        name = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", None)
        if isinstance(name, str) and name.startswith(CHANGE_STREAM_CODE):
            return True
    return False
