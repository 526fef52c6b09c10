"""Small things of the command line: `--version`, and `ingest` saying why it skips Stripe."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from tests.support.cli import configured, recompute
from tests.support.legacy import an_account, create_stores

pytestmark = pytest.mark.integration


def test_version_is_the_packages_own():
    result = recompute("--version", env={})
    assert result.returncode == 0 and result.stdout == f"recompute {version('recompute')}\n"


def test_ingest_of_all_sources_without_a_stripe_key_says_in_one_line_that_it_skips_stripe(stores):
    create_stores(stores)
    an_account(stores, "acc_000001")
    result = recompute("ingest", env={**configured(stores), "STRIPE_API_KEY": ""})
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if line.startswith("stripe")] == [
        "stripe: skipped: STRIPE_API_KEY is not set, so Stripe is not polled"]
