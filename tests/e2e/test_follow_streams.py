"""`project --follow` when the change streams' publication or slot change under it: a table that
leaves the publication is read by snapshot, a dropped publication or slot is one log line and a
broken stream in `cdc status` until `cdc setup` repairs it while the follower runs; nothing lost."""

from __future__ import annotations

import json
import subprocess
import time

import psycopg
import pytest

from tests.support.cdc import drop_slot, events_of
from tests.support.follow import (
    RECOMPUTE,
    a_calm_world,
    an_overdue_invoice,
    env_of,
    eventually,
    following,
    project,
    stop,
)
from tests.support.legacy import execute

pytestmark = pytest.mark.integration


@pytest.fixture
def streaming(stores):
    """A calm world of 10 accounts whose three stores have change streams, projected once."""
    accounts = a_calm_world(stores, accounts=10)
    setup = cdc(stores, "setup")
    assert setup.returncode == 0, setup.stderr
    project(stores)
    return stores, accounts


def cdc(dsns, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*RECOMPUTE, "cdc", *args], env=env_of(dsns), capture_output=True, text=True, timeout=120)


def subs_stream(dsns) -> dict:
    (stream,) = json.loads(cdc(dsns, "status", "--source", "subs", "--json").stdout)["streams"]
    return stream


def subs_stage(dsns, account: str) -> str | None:
    with psycopg.connect(dsns["subs"]) as conn:
        row = conn.execute("SELECT stage FROM subs_dunning WHERE account_id = %s", (account,)).fetchone()
    return row and row[0]


def a_dunning_account(dsns, account: str) -> None:
    """An invoice 5 days overdue: the follower corrects the account's dunning to `retrying`, and its
    writes come back through the streams (so the drifts below are the only news of the account)."""
    an_overdue_invoice(dsns, account, days=5)
    eventually(lambda: subs_stage(dsns, account) == "retrying", what=f"{account} corrected to retrying")
    eventually(lambda: observed(dsns, account, "subs_dunning") and observed(dsns, account, "dunning"),
               what="the written rows observed")
    time.sleep(1.0)  # the follower evaluates the account once more, for its own writes, and agrees


def drift(dsns, account: str) -> None:
    execute(dsns["subs"], "UPDATE subs_dunning SET stage = 'grace', updated_at = now() WHERE account_id = %s",
            (account,))


def observed(dsns, account: str, table: str) -> list[dict]:
    return [e.row or {} for e in events_of(dsns, account) if e.table == table]


def lines_about(process, *words: str) -> list[str]:
    return [line for line in process.log_lines if all(word in line for word in words)]


def test_a_table_dropped_from_the_publication_is_read_by_snapshot_and_its_drift_corrected(streaming):
    dsns, accounts = streaming
    with following(dsns, "--max-share", "1") as process:
        a_dunning_account(dsns, accounts[3])
        execute(dsns["subs"], "ALTER PUBLICATION recompute_subs DROP TABLE subs_dunning")
        drift(dsns, accounts[3])
        eventually(lambda: subs_stage(dsns, accounts[3]) == "retrying", within=30,
                   what="the drift in the unpublished table corrected")
        stream = subs_stream(dsns)
        assert stream["snapshot_tables"] == ["subs_dunning"] and stream["state"] == "streaming"
        text = cdc(dsns, "status", "--source", "subs").stdout
        assert "subs_dunning read by snapshot (not in publication recompute_subs)" in text
        status = subprocess.run([*RECOMPUTE, "status"], env=env_of(dsns), capture_output=True, text=True, timeout=60)
        assert "subs change stream: streaming; subs_dunning read by snapshot" in status.stdout, status.stdout
        code, _ = stop(process)
    assert code == 0
    assert len(lines_about(process, "subs: subs_dunning left its change stream", "read by snapshot")) == 1


def test_a_dropped_publication_is_one_log_line_a_broken_stream_and_cdc_setup_repairs_it_while_following(streaming):
    dsns, accounts = streaming
    with following(dsns, "--max-share", "1") as process:
        a_dunning_account(dsns, accounts[3])
        execute(dsns["subs"], "DROP PUBLICATION recompute_subs")
        execute(dsns["subs"], "UPDATE subs_account SET billing_email = 'while@broken.example' WHERE account_id = %s",
                (accounts[5],))
        eventually(lambda: subs_stream(dsns)["state"] == "broken", within=30, what="cdc status: broken")
        time.sleep(3.0)  # retries meanwhile: not a line each
        stream = subs_stream(dsns)
        assert 'publication "recompute_subs" does not exist' in stream["reason"]
        assert "broken: publication" in cdc(dsns, "status", "--source", "subs").stdout
        setup = cdc(dsns, "setup", "--source", "subs")
        assert setup.returncode == 0, setup.stderr
        assert "re-created the slot" in setup.stdout and "already streaming" not in setup.stdout
        eventually(lambda: subs_stream(dsns)["state"] == "streaming", within=30, what="the stream open again")
        drift(dsns, accounts[3])  # through the stream again
        eventually(lambda: subs_stage(dsns, accounts[3]) == "retrying", within=30, what="the drift corrected")
        # the keeper says "open again" once the stream has held for a while: stopping sooner cuts the line off
        eventually(lambda: lines_about(process, "subs change stream open again"), within=30,
                   what="a line saying the stream is open again")
        code, _ = stop(process)
    assert code == 0
    assert "while@broken.example" in [row.get("billing_email") for row in observed(dsns, accounts[5], "subs_account")]
    assert len(lines_about(process, "subs change stream broken", "recompute_subs")) == 1, process.log_lines
    assert len(lines_about(process, "subs change stream open again")) == 1, process.log_lines


def test_a_dropped_slot_is_one_log_line_a_broken_stream_and_cdc_setup_sets_it_up_again_nothing_lost(streaming):
    dsns, accounts = streaming
    with following(dsns, "--max-share", "1") as process:
        a_dunning_account(dsns, accounts[3])
        drop_slot(dsns["subs"])
        execute(dsns["subs"], "UPDATE subs_account SET billing_email = 'no@slot.example' WHERE account_id = %s",
                (accounts[5],))
        eventually(lambda: subs_stream(dsns)["state"] == "broken", within=30, what="cdc status: broken")
        time.sleep(3.0)
        assert "slot" in subs_stream(dsns)["reason"]
        setup = cdc(dsns, "setup", "--source", "subs")
        assert setup.returncode == 0, setup.stderr
        eventually(lambda: subs_stream(dsns)["state"] == "streaming", within=30, what="the stream open again")
        drift(dsns, accounts[3])
        eventually(lambda: subs_stage(dsns, accounts[3]) == "retrying", within=30, what="the drift corrected")
        # the keeper says "open again" once the stream has held for a while: stopping sooner cuts the line off
        eventually(lambda: lines_about(process, "subs change stream open again"), within=30,
                   what="a line saying the stream is open again")
        code, _ = stop(process)
    assert code == 0
    assert "no@slot.example" in [row.get("billing_email") for row in observed(dsns, accounts[5], "subs_account")]
    assert len(lines_about(process, "subs change stream broken")) == 1, process.log_lines
    assert len(lines_about(process, "subs change stream open again")) == 1, process.log_lines
