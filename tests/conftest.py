from __future__ import annotations

import pytest

from simulation.harness.databases import STORES, scratch_databases

pytest_plugins = ["tests.support.markers"]


@pytest.fixture
def stores():
    """Empty cf_prod, billing_prod, subs and event store databases on the real PostgreSQL."""
    with scratch_databases(*STORES) as dsns:
        yield dsns
