"""Rules identity on the command line, against the real PostgreSQL and RabbitMQ: a file that claims a
known version with other numbers is refused with both digests, and what `apply` writes and publishes
carries the digest of the rules it ran under."""

from __future__ import annotations

import orjson
import psycopg
import pytest

from domain.rules import RULES_V1, parse_rules
from eventlog.own_tables import ensure_own_schema
from simulation.harness.apply_fleet import NOW, a_consumer, drain, snapshot
from tests.support.rules import RETRYING_ABOVE_SUSPENDED, SPEC_V1

pytestmark = [pytest.mark.integration, pytest.mark.fleet(shared=True)]
AS_OF = ("--as-of", NOW.isoformat())
LYING_V1 = SPEC_V1.replace("days_overdue_at_least = 21", "days_overdue_at_least = 30")
V2 = SPEC_V1.replace('version = "v1"', 'version = "v2"').replace("days_overdue_at_least = 21",
                                                                  "days_overdue_at_least = 30")
OTHER_V2 = SPEC_V1.replace('version = "v1"', 'version = "v2"').replace("days_overdue_at_least = 3",
                                                                        "days_overdue_at_least = 5")


def rows(fleet, query: str) -> list[tuple]:
    with psycopg.connect(fleet.dsns["eventstore"]) as conn:
        if conn.execute("SELECT to_regclass('known_rules') IS NULL").fetchone()[0] and "known_rules" in query:
            return []
        return conn.execute(query).fetchall()


def written(fleet) -> tuple:
    return (rows(fleet, "SELECT count(*) FROM correction_audit"), rows(fleet, "SELECT count(*) FROM apply_run"),
            rows(fleet, "SELECT version, digest FROM known_rules ORDER BY version"), snapshot(fleet.dsns))


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_a_file_claiming_v1_with_other_numbers_is_refused_by_plan_apply_and_explain_and_nothing_is_written(
        fleet, tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(LYING_V1)
    before = written(fleet)
    refused = one_line(fleet.recompute("plan", *AS_OF, "--rules", str(path), expect=2).stderr)
    lying = parse_rules(LYING_V1).digest
    assert refused == (f"recompute: rules file {path}: version 'v1' is already known with digest {RULES_V1.digest} "
                       f"(built in); this file's rules differ (digest {lying}): give them a new version")
    assert one_line(fleet.recompute("plan", *AS_OF, "--json", expect=2, RECOMPUTE_RULES=str(path)).stderr) == \
        f"recompute: RECOMPUTE_RULES: {refused.removeprefix('recompute: ')}"
    assert one_line(fleet.recompute("apply", *AS_OF, "--force", "--rules", str(path), expect=2).stderr) == refused
    account = fleet.manifest.drifting_accounts[0]
    assert one_line(fleet.recompute("explain", account, *AS_OF, "--rules", str(path), expect=2).stderr) == refused
    assert written(fleet) == before


def test_an_unreachable_stage_is_refused_by_plan_with_the_stage_that_shadows_it(fleet, tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(RETRYING_ABOVE_SUSPENDED)
    assert one_line(fleet.recompute("plan", *AS_OF, "--rules", str(path), expect=2).stderr) == (
        f"recompute: rules file {path}: [[dunning.stage]] #2 'suspended': unreachable: stage #1 'retrying' "
        "(days_overdue_at_least = 3) applies whenever it would (days_overdue >= 21)")


def test_apply_records_its_rules_with_their_digest_in_audit_run_and_events_and_a_later_file_claiming_them_is_refused(
        fleet, tmp_path):
    v2, other = tmp_path / "v2.toml", tmp_path / "other-v2.toml"
    v2.write_text(V2)
    other.write_text(OTHER_V2)
    planned = orjson.loads(fleet.recompute("plan", *AS_OF, "--rules", str(v2), "--json").stdout)
    digest = planned["rules_digest"]
    assert (planned["rules_version"], digest) == ("v2", parse_rules(V2).digest)
    assert rows(fleet, "SELECT * FROM known_rules") == [], "plan writes nothing"
    with a_consumer() as queue:
        # apply runs only under the active rules: before any backfill, RECOMPUTE_RULES names them
        done = orjson.loads(fleet.recompute("apply", *AS_OF, "--rules", str(v2), "--force", "--json",
                                            RECOMPUTE_RULES=str(v2)).stdout)
        received = drain(queue)
    assert (done["rules_version"], done["rules_digest"]) == ("v2", digest) and done["applied"] > 0

    assert set(rows(fleet, "SELECT rules_version, rules_digest FROM correction_audit")) == {("v2", digest)}
    assert rows(fleet, "SELECT rules_version, rules_digest FROM apply_run") == [("v2", digest)]
    assert received and {(m["body"]["rules_version"], m["body"]["rules_digest"]) for m in received} == {("v2", digest)}
    assert {(b["rules_version"], b["rules_digest"]) for (b,) in rows(fleet, "SELECT body FROM outbox_event")} == \
        {("v2", digest)}
    [(version, known_digest, canonical, run_id)] = rows(
        fleet, "SELECT version, digest, rules::text, first_run_id::text FROM known_rules")
    assert (version, known_digest, run_id) == ("v2", digest, done["run_id"])
    assert orjson.loads(canonical) == orjson.loads(parse_rules(V2).canonical_json())

    before = written(fleet)
    refused = one_line(fleet.recompute("plan", *AS_OF, "--rules", str(other), expect=2).stderr)
    assert refused.startswith(f"recompute: rules file {other}: version 'v2' is already known with digest {digest} "
                              f"(first used by apply run {done['run_id']} at ")
    assert refused.endswith(f"this file's rules differ (digest {parse_rules(OTHER_V2).digest}): give them a new "
                            "version")
    assert one_line(fleet.recompute("apply", *AS_OF, "--rules", str(other), "--force", expect=2).stderr) == refused
    assert written(fleet) == before
    fleet.recompute("plan", *AS_OF, "--rules", str(v2))  # the same rules again are fine


def test_an_event_store_made_before_digests_gets_the_columns(stores):
    ensure_own_schema(stores["eventstore"])
    with psycopg.connect(stores["eventstore"]) as conn:
        conn.execute("DROP TABLE known_rules")
        conn.execute("ALTER TABLE correction_audit DROP COLUMN rules_digest")
        conn.execute("ALTER TABLE apply_run DROP COLUMN rules_digest")
    ensure_own_schema(stores["eventstore"])
    with psycopg.connect(stores["eventstore"]) as conn:
        columns = conn.execute("SELECT table_name FROM information_schema.columns WHERE column_name = 'rules_digest' "
                               "ORDER BY table_name").fetchall()
        assert columns == [("apply_run",), ("correction_audit",)]
        assert conn.execute("SELECT to_regclass('known_rules') IS NOT NULL").fetchone()[0]
