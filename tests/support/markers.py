"""The suite's markers, given by where a test lives (registered in pyproject.toml).

`db`: the test talks to a real PostgreSQL (everything under integration/ and e2e/, and the contract
test's PostgreSQL case, marked `integration`), so `pytest -m "not db"` is the quick loop of pure and
faked tests. `broker` (RabbitMQ) and `browser` (headless Chromium) are marked in the test files
themselves; they are db tests too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

DB_FOLDERS = ("integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(str(item.path)).parent.name
        if folder in DB_FOLDERS or item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.db)
