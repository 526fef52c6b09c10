"""Every correction's `drift` on a fleet whose drift has known origins, by snapshots and by change streams."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from simulation.drift_stories import Expected
from tests.support.drift_fleet import played_fleet

pytestmark = pytest.mark.integration

COMMIT = timedelta(seconds=1)  # a change stream times a write by its commit, just after the instant it was made at


def mismatches(expected: list[Expected], corrections: list[dict], *, exact_writes: bool) -> list[str]:
    """What differs between the manifest and the plan's corrections, one line each."""
    found = {(c["account_id"], c["table"], c["op"], c["column"]): c for c in corrections}
    wanted = {(e.account_id, e.table, e.op, e.column): e for e in expected}
    problems = [f"not in the manifest: {k}" for k in sorted(set(found) - set(wanted), key=str)]
    problems += [f"not planned: {k}" for k in sorted(set(wanted) - set(found), key=str)]
    for key in sorted(set(found) & set(wanted), key=str):
        e, drift = wanted[key], found[key]["drift"]
        since = datetime.fromisoformat(drift["since"])
        on_time = since == e.instant if exact_writes or not e.legacy_write else e.instant <= since < e.instant + COMMIT
        if (drift["cause"], drift["owner"], drift["rewrites"]) != (e.cause, e.owner, e.rewrites) or not on_time \
                or not e.matches_ref(drift["by"]):
            problems.append(f"{key}: drift {drift}, manifest {e}")
    return problems


@pytest.mark.parametrize("how", ["snapshot", "stream"])
def test_every_corrections_drift_is_the_cause_owner_instant_and_ref_the_fleet_wrote(tmp_path, how):
    with played_fleet(tmp_path, how=how) as played:
        corrections = played.plan["corrections"]
        assert corrections and all(c["drift"]["since"] <= played.at.isoformat() for c in corrections)
        problems = mismatches(played.fleet.expected, corrections, exact_writes=how == "snapshot")
        assert problems == [], "\n".join(problems)
        assert {e.cause for e in played.fleet.expected} == {"wrong_write", "missed_change", "missing",
                                                            "overwrote_correction"}
