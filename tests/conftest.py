from __future__ import annotations

import inspect

import pytest

from simulation.harness.databases import STORES, scratch_databases
from tests.support.clusters import LOGICAL, a_cluster

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
