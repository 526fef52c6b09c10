"""A role made from `recompute grants`' own output (cli.md "Least privilege") runs `ingest`, `apply`,
`backfill --apply` and `project --follow` with the same corrections a superuser's plan lists, while
PostgreSQL itself refuses it any write rules-v1 §3 never makes; `check` tells the roles apart."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import psycopg
import pytest
from psycopg import sql

from domain.legacy_tables import STORES as LEGACY
from simulation.fleet import build_fleet
from simulation.harness.apply_fleet import NOW, Fleet
from simulation.harness.databases import SERVER, STORES, dsn_for, scratch_databases
from tests.support.cli import no_secrets
from tests.support.follow import RECOMPUTE, a_calm_world, an_overdue_invoice, dunning_stage, env_of
from tests.support.rules import SPEC_V1

pytestmark = [pytest.mark.integration, pytest.mark.broker, pytest.mark.slow]
AS_OF = ("--as-of", NOW.isoformat())


@contextmanager
def a_role(server: str = SERVER) -> Iterator[str]:
    """A login role with no privileges of its own, dropped afterwards (after the databases it was granted on)."""
    role = f"rt_role_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn_for("postgres", server), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        yield role
    finally:
        with psycopg.connect(dsn_for("postgres", server), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def as_role(dsns: dict[str, str], role: str) -> dict[str, str]:
    return {store: psycopg.conninfo.make_conninfo(dsn, user=role) for store, dsn in dsns.items()}


def run(env_dsns: dict[str, str], *args: str, expect: int = 0) -> subprocess.CompletedProcess:
    done = no_secrets(subprocess.run([*RECOMPUTE, *args], env=env_of(env_dsns), capture_output=True, text=True,
                                     timeout=300), env_of(env_dsns))
    assert done.returncode == expect, f"recompute {' '.join(args)}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    return done


def grant(dsns: dict[str, str], role: str, server: str = SERVER) -> None:
    """What an operator does: runs `grants`' SQL in each legacy database as the tables' owner, and gives
    the role its own event store database."""
    for store in LEGACY:
        script = run(dsns, "grants", "--role", role, "--source", store).stdout
        with psycopg.connect(dsns[store], autocommit=True) as owner:
            owner.execute(script.encode())
    with psycopg.connect(dsn_for("postgres", server), autocommit=True) as admin:
        database = psycopg.conninfo.conninfo_to_dict(dsns["eventstore"])["dbname"]
        admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(database), sql.Identifier(role)))


@pytest.fixture
def granted(tmp_path):
    """A drifting fleet built by its owners; (owner DSNs, role DSNs, the role's Fleet), ingested by the role."""
    with a_role() as role, scratch_databases(*STORES) as dsns:
        manifest = build_fleet(dsns, accounts=120, seed=7, drifting=25, now=NOW, stripe_dir=tmp_path)
        grant(dsns, role)
        mine = as_role(dsns, role)
        fleet = Fleet(mine, tmp_path, manifest)
        fleet.ingest()
        # the superuser reads the legacy stores; the event store stays the role's own
        yield {**dsns, "eventstore": mine["eventstore"]}, mine, fleet


def shapes(corrections: list[dict]) -> list[bytes]:
    return sorted(orjson.dumps({k: c[k] for k in ("account_id", "table", "op", "key", "column", "from", "to")},
                               option=orjson.OPT_SORT_KEYS) for c in corrections)


def test_the_granted_role_applies_and_backfills_the_same_corrections_a_superuser_plans(granted, tmp_path):
    superuser, _, fleet = granted
    planned = orjson.loads(run(superuser, "plan", *AS_OF, "--json").stdout)
    assert planned["corrections"]
    done = orjson.loads(fleet.recompute("apply", *AS_OF, "--force", "--json").stdout)
    assert shapes(done["corrections"]) == shapes(planned["corrections"])
    assert done["stale"] == 0 and done["applied"] == len(planned["corrections"])
    assert orjson.loads(run(superuser, "plan", *AS_OF, "--json").stdout)["corrections"] == []

    v2 = tmp_path / "v2.toml"
    v2.write_text(SPEC_V1.replace('"v1"', '"v2"').replace("days_overdue = 60", "days_overdue = 45")
                  .replace("days_overdue_at_least = 3", "days_overdue_at_least = 2"))
    planned = orjson.loads(run(superuser, "plan", *AS_OF, "--rules", str(v2), "--json").stdout)
    assert planned["corrections"]
    backfilled = orjson.loads(fleet.recompute("backfill", "--rules", str(v2), *AS_OF, "--apply", "--force",
                                              "--json").stdout)
    assert shapes(backfilled["against_legacy"]["corrections"]) == shapes(planned["corrections"])
    assert backfilled["apply"]["applied"] == len(planned["corrections"]) and backfilled["apply"]["stale"] == 0


@pytest.mark.parametrize("statement", [
    "UPDATE invoices SET amount_due = 0",
    "UPDATE invoices SET currency = 'eur'",
    "INSERT INTO charges VALUES ('ch_x', 'acc_000001', NULL, NULL, 100, 'succeeded', NULL, now())",
    "UPDATE charges SET amount = 0",
    "DELETE FROM invoices",
    "UPDATE schedules SET status = 'done'",
])
def test_postgresql_refuses_the_granted_role_a_write_rules_v1_never_makes(granted, statement):
    _, mine, _ = granted
    with psycopg.connect(mine["billing_prod"]) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            conn.execute(statement)


def test_check_warns_of_a_superuser_is_clean_for_the_granted_role_and_names_a_missing_column_grant(granted):
    superuser, mine, fleet = granted
    loose = run(superuser, "check")
    assert "warning: RECOMPUTE_CF_PROD_DSN: role postgres is a superuser: it may write anything" in loose.stdout
    assert "error" not in loose.stdout.replace("0 errors", "")

    clean = orjson.loads(run(mine, "check", "--json").stdout)
    assert clean["findings"] == [] and clean["ok"]

    with psycopg.connect(superuser["billing_prod"], autocommit=True) as owner:
        owner.execute(sql.SQL("REVOKE UPDATE (amount_paid) ON invoices FROM {}").format(
            sql.Identifier(psycopg.conninfo.conninfo_to_dict(mine["billing_prod"])["user"])))
    lacking = run(mine, "check", expect=2)
    role = psycopg.conninfo.conninfo_to_dict(mine["billing_prod"])["user"]
    assert (f"error: RECOMPUTE_BILLING_PROD_DSN: billing_prod.invoices: role {role} lacks UPDATE (amount_paid)"
            in lacking.stdout.splitlines())
    refused = fleet.recompute("apply", *AS_OF, "--force", expect=2)  # the short form, before anything is written
    assert refused.stderr.splitlines() == [
        f"recompute: RECOMPUTE_BILLING_PROD_DSN: billing_prod.invoices: role {role} lacks UPDATE (amount_paid)"]


def test_a_table_level_update_grant_is_warned_of_column_by_column(granted):
    superuser, mine, _ = granted
    role = psycopg.conninfo.conninfo_to_dict(mine["billing_prod"])["user"]
    with psycopg.connect(superuser["billing_prod"], autocommit=True) as owner:
        owner.execute(sql.SQL("GRANT UPDATE ON invoices TO {}").format(sql.Identifier(role)))
    found = orjson.loads(run(mine, "check", "--json").stdout)
    assert found["findings"] == [{"level": "warning", "text": (
        f"RECOMPUTE_BILLING_PROD_DSN: billing_prod.invoices: role {role} may UPDATE (account_id, amount_due, "
        "created_at, currency, due_at, invoice_id, stripe_invoice_id), which recompute never writes")}]


@pytest.mark.logical
def test_project_follow_as_the_granted_role_corrects_changes_read_through_the_change_streams(logical_server):
    with a_role(logical_server) as role, scratch_databases(*STORES, server=logical_server) as stores:
        accounts = a_calm_world(stores, accounts=5)
        grant(stores, role, logical_server)
        mine = as_role(stores, role)
        owner = {**stores, "eventstore": mine["eventstore"]}
        for store in LEGACY:  # once, as the tables' owner: the publications
            script = run(stores, "cdc", "setup", "--print-sql", "--source", store).stdout
            assert script.splitlines()[1].startswith("CREATE PUBLICATION \"recompute_")
            with psycopg.connect(stores[store], autocommit=True) as conn:
                conn.execute(script.encode())
        run(mine, "cdc", "setup")  # the role itself: the slots (REPLICATION) and the handoff
        an_overdue_invoice(stores, accounts[3], days=5)
        run(owner, "ingest")
        planned = orjson.loads(run(owner, "plan", "--json").stdout)["corrections"]
        assert {c["account_id"] for c in planned} == {accounts[3]}
        follower = subprocess.Popen([*RECOMPUTE, "project", "--follow", "--lease", "2", "--max-share", "1"],
                                    env=env_of(mine, PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        try:
            first = follower.stdout.readline()  # type: ignore[union-attr]
            assert first.startswith("projection: generation"), first + follower.stderr.read()  # type: ignore[union-attr]
            _eventually(lambda: dunning_stage(stores, accounts[3]) == "retrying")
            _eventually(lambda: streaming(role, logical_server) == 3)  # it reads the three change streams as the role
            an_overdue_invoice(stores, accounts[4], days=5)
            _eventually(lambda: dunning_stage(stores, accounts[4]) == "retrying")
        finally:
            follower.terminate()
            assert follower.wait(timeout=60) == 0, follower.stderr.read()  # type: ignore[union-attr]
        with psycopg.connect(mine["eventstore"]) as conn:
            written = conn.execute("SELECT account_id, tbl, key, col, from_value, to_value FROM correction_audit "
                                   "WHERE status = 'applied'").fetchall()
        assert {(a, t) for a, t, *_ in written} >= {(c["account_id"], c["table"]) for c in planned}
        assert orjson.loads(run(owner, "plan", "--json").stdout)["corrections"] == []


def streaming(role: str, server: str) -> int:
    with psycopg.connect(dsn_for("postgres", server)) as admin:
        return admin.execute("SELECT count(*) FROM pg_stat_replication WHERE usename = %s", (role,)).fetchone()[0]


def _eventually(check, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {within:g}s")
