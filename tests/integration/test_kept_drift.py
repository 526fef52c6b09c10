"""Kept drift (projections/drift.py): a plan on an unchanged log says each correction's drift from
what the last plan kept, and says it again from the log when anything it depends on changed."""

from __future__ import annotations

from datetime import timedelta

import orjson
import psycopg
import pytest

import projections.drift as shell
from domain.owners import DEFAULT_OWNERS, Owners
from domain.rules import RULES_V1
from eventlog.stores import Stores
from projections.plan import plan
from tests.support.fleet import FLEET_NOW, a_fleet

pytestmark = pytest.mark.integration


def said(result) -> bytes:
    return orjson.dumps([c.as_json() for c in result.corrections])


def kept_drift(dsns) -> int:
    with psycopg.connect(dsns["eventstore"]) as conn:
        return conn.execute("SELECT count(*) FROM read_model_facts WHERE drift_key IS NOT NULL").fetchone()[0]


@pytest.fixture
def walks(monkeypatch):
    """How many accounts' drift was walked from the log."""
    counted = {"accounts": 0}
    walk = shell.drift_origins

    def counting(*args, **kwargs):
        counted["accounts"] += 1
        return walk(*args, **kwargs)

    monkeypatch.setattr(shell, "drift_origins", counting)
    return counted


def test_a_plan_on_an_unchanged_log_says_the_kept_drift_and_walks_again_when_an_input_changes(tmp_path, walks):
    with a_fleet(tmp_path, accounts=120, drifting=20) as fleet:
        stores = Stores.from_dsns(fleet.dsns)
        replayed = plan(stores, RULES_V1, FLEET_NOW, kept_facts=False)
        drifting = len({c.account_id for c in replayed.corrections})
        assert drifting > 0 and all(c.drift is not None for c in replayed.corrections)

        first = plan(stores, RULES_V1, FLEET_NOW)
        assert kept_drift(fleet.dsns) == drifting
        walks["accounts"] = 0
        second = plan(stores, RULES_V1, FLEET_NOW)
        assert walks["accounts"] == 0, "no account's drift was walked again"
        assert said(second) == said(first) == said(replayed)
        walks["accounts"] = 0
        assert said(plan(stores, RULES_V1, FLEET_NOW, kept_facts=False)) == said(second)
        assert walks["accounts"] == drifting, "a full replay walks every drifting account"
        walks["accounts"] = 0

        owners = Owners({**DEFAULT_OWNERS, "billing_prod.dunning": "Team Dunning"})
        with_owners = plan(stores, RULES_V1, FLEET_NOW, owners=owners)
        assert walks["accounts"] == drifting, "other owners: every account walked again"
        assert said(with_owners) == said(plan(stores, RULES_V1, FLEET_NOW, owners=owners, kept_facts=False))
        assert said(with_owners) != said(second) or not any(c.table == "billing_prod.dunning"
                                                            for c in second.corrections)

        walks["accounts"] = 0
        later = FLEET_NOW + timedelta(hours=1)
        assert said(plan(stores, RULES_V1, later)) == said(plan(stores, RULES_V1, later, kept_facts=False))
        assert walks["accounts"] >= drifting, "another T: walked again"
