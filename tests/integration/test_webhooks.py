"""A real `recompute serve` process: signed Stripe deliveries are recorded once, every request gets
an HTTP answer (400 malformed, 405 wrong method, 408 slow body, 413 too large, 503 store down), and
/metrics has every name of cli.md."""

from __future__ import annotations

import signal
import socket
import subprocess
import time

import orjson
import psycopg
import pytest
import requests
from psycopg import sql

from simulation.harness.databases import STORES, dsn_for, scratch_databases
from tests.support.serve import SECRET, recompute_command, serve_env, served, signed
from tests.support.stripe_world import NOW, a_customer, an_event, an_invoice

pytestmark = pytest.mark.integration
CLI_METRICS = ("recompute_events_appended_total", "recompute_source_lag_seconds",
               "recompute_corrections_applied_total", "recompute_accounts_disagreeing", "recompute_parked_records",
               "recompute_outbox_waiting", "recompute_correction_lag_seconds")


@pytest.fixture
def server(stores):
    with served(serve_env(stores)) as running:
        yield running, stores["eventstore"]


@pytest.fixture(scope="module")
def refusing():
    """One server for the tests where nothing is recorded (fewer starts)."""
    with scratch_databases(*STORES) as stores, served(serve_env(stores)) as running:
        yield running, stores["eventstore"]


def deliver(url: str, envelope, secret: str = SECRET) -> requests.Response:
    body = orjson.dumps(envelope)
    return requests.post(f"{url}/webhooks/stripe", data=body, timeout=10,
                         headers={"Stripe-Signature": signed(body, secret), "Content-Type": "application/json"})


def raw(port: int, request: bytes, *, timeout: float = 15) -> tuple[bytes, float]:
    """Sends bytes as they are and reads what comes back until the server closes (or `timeout`):
    the answer and how long it took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(request)
        answer = b""
        try:
            while chunk := conn.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and _complete(answer):
                    break
        except (TimeoutError, ConnectionResetError):
            pass
    return answer, time.monotonic() - started


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), f"no HTTP answer: {answer[:80]!r}"
    return int(answer.split(b" ")[1])


def recorded(eventstore: str) -> list[tuple[str, str]]:
    with psycopg.connect(eventstore) as conn:
        return conn.execute("SELECT originator_id, convert_from(state, 'UTF8')::jsonb ->> 'event_id' "
                            "FROM recompute_events ORDER BY notification_id").fetchall()


def test_a_signed_delivery_is_recorded_once_however_often_it_arrives(server):
    (running, eventstore) = server
    assert deliver(running.url, an_event("evt_c", "customer.created", a_customer(), NOW - 100)).status_code == 200
    invoice_event = an_event("evt_i", "invoice.payment_failed", an_invoice(), NOW - 50)
    first, again = deliver(running.url, invoice_event), deliver(running.url, invoice_event)
    assert first.status_code == again.status_code == 200 and first.json()["received"] is True
    assert recorded(eventstore) == [("acc_000042", "evt_c"), ("acc_000042", "evt_i")]


def test_a_delivery_with_a_bad_signature_is_refused_and_nothing_is_recorded(server):
    (running, eventstore) = server
    response = deliver(running.url, an_event("evt_c", "customer.created", a_customer(), NOW), secret="whsec_wrong")
    assert response.status_code == 400 and "signature" in response.json()["error"]
    assert recorded(eventstore) == []


@pytest.mark.parametrize("body", [[1, 2, 3], "x", None, 7, {"object": "event"}, {"id": 42}])
def test_a_signed_body_that_is_not_an_event_object_is_400(refusing, body):
    (running, eventstore) = refusing
    response = deliver(running.url, body)
    assert response.status_code == 400 and "error" in response.json()
    assert recorded(eventstore) == []


def test_a_signed_body_that_is_not_json_is_400(refusing):
    (running, _) = refusing
    body = b"{not json"
    response = requests.post(f"{running.url}/webhooks/stripe", data=body, timeout=10,
                             headers={"Stripe-Signature": signed(body)})
    assert response.status_code == 400 and "JSON" in response.json()["error"]


@pytest.mark.parametrize("length", [b"abc", b"-5", b"1, 2"])
def test_a_content_length_that_is_not_a_size_gets_an_http_4xx(refusing, length):
    (running, _) = refusing
    answer, _ = raw(running.port, b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Length: " + length
                    + b"\r\n\r\n{}")
    assert 400 <= status_of(answer) < 500


def test_a_200_mb_body_is_refused_with_413_before_it_is_read(refusing):
    (running, _) = refusing
    answer, took = raw(running.port, b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\n"
                       b"Content-Length: 200000000\r\n\r\n" + b"x" * 1000)
    assert status_of(answer) == 413 and took < 5


def test_a_chunked_body_over_the_limit_is_cut_with_413(refusing):
    (running, _) = refusing
    chunk = b"x" * 65536
    chunks = (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") * 40  # 2.5 MiB, no Content-Length
    answer, _ = raw(running.port, b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + chunks)
    assert status_of(answer) == 413


def test_a_body_shorter_than_its_content_length_is_answered_408_within_seconds(refusing):
    (running, _) = refusing
    answer, took = raw(running.port, b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\n"
                       b"Content-Length: 900000\r\n\r\n{\"id\":", timeout=30)
    assert status_of(answer) == 408 and took < 15


def test_a_wrong_method_is_405_and_an_unknown_path_404(refusing):
    (running, _) = refusing
    assert requests.get(f"{running.url}/webhooks/stripe", timeout=5).status_code == 405
    assert requests.post(f"{running.url}/healthz", timeout=5).status_code == 405
    assert requests.get(f"{running.url}/nowhere", timeout=5).status_code == 404


def test_health_and_metrics_answer_with_every_name_of_the_contract(server):
    (running, eventstore) = server
    assert requests.get(f"{running.url}/healthz", timeout=5).json() == {"status": "ok"}
    deliver(running.url, an_event("evt_c", "customer.created", a_customer(), NOW))
    deliver(running.url, [1])
    with psycopg.connect(eventstore) as conn:
        conn.execute("INSERT INTO ingest_checkpoint (source, position, updated_at) "
                     "VALUES ('legacy:cf_prod.accounts', '{}', now() - interval '90 seconds')")
    response = requests.get(f"{running.url}/metrics", timeout=5)
    assert response.status_code == 200
    lines = response.text.splitlines()
    for name in CLI_METRICS:
        assert any(line.split(" ")[:3] in (["#", "TYPE", name], ["#", "TYPE", name.removesuffix("_total")])
                   for line in lines), name
    samples = dict(line.rsplit(" ", 1) for line in lines if not line.startswith("#"))
    assert float(samples['recompute_events_appended_total{source="stripe"}']) == 1
    assert 90 <= float(samples['recompute_source_lag_seconds{source="cf_prod"}']) < 200
    assert float(samples["recompute_parked_records"]) == 0
    assert float(samples['recompute_webhook_deliveries_total{outcome="recorded"}']) == 1
    assert float(samples['recompute_webhook_deliveries_total{outcome="malformed"}']) == 1


def test_a_streamed_store_s_source_lag_is_its_change_stream_s_not_its_stalled_snapshot_checkpoints(server):
    (running, eventstore) = server
    with psycopg.connect(eventstore) as conn:  # the snapshot checkpoints stop moving once a stream carries the store
        conn.execute("INSERT INTO ingest_checkpoint (source, position, updated_at) VALUES "
                     "('legacy:billing_prod.invoices', '{}', now() - interval '1 hour'), "
                     "('cdc:billing_prod', '{}', now() - interval '5 seconds')")
    lines = requests.get(f"{running.url}/metrics", timeout=5).text.splitlines()
    samples = dict(line.rsplit(" ", 1) for line in lines if not line.startswith("#"))
    assert 5 <= float(samples['recompute_source_lag_seconds{source="billing_prod"}']) < 60
    assert not any("cdc:" in line for line in lines)


def test_the_oldest_waiting_stripe_object_and_outbox_event_are_served_as_ages_for_the_alerts(server):
    (running, eventstore) = server
    with psycopg.connect(eventstore) as conn:
        conn.execute("INSERT INTO parked_record (source, tbl, key, reason, position, waiting_for, parked_at) "
                     "VALUES ('stripe', 'invoice', 'in_1', 'no account yet', 'evt_1', 'cus_1', "
                     "now() - interval '2 hours')")
        conn.execute("INSERT INTO outbox_event (event_id, run_id, account_id, type, subject, status, created_at) "
                     "VALUES (gen_random_uuid(), gen_random_uuid(), 'acc_1', 'DunningStageChanged', 'acc_1', "
                     "'ready', now() - interval '10 minutes')")
    lines = requests.get(f"{running.url}/metrics", timeout=5).text.splitlines()
    samples = dict(line.rsplit(" ", 1) for line in lines if not line.startswith("#"))
    assert float(samples["recompute_stripe_waiting_objects"]) == 1
    assert 7200 <= float(samples["recompute_stripe_waiting_oldest_seconds"]) < 7300
    assert 600 <= float(samples["recompute_outbox_oldest_waiting_seconds"]) < 700


def test_with_the_event_store_gone_every_endpoint_answers_503_with_a_reason(server):
    (running, eventstore) = server
    database = psycopg.conninfo.conninfo_to_dict(eventstore)["dbname"]
    with psycopg.connect(dsn_for("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))
    for answer in (requests.get(f"{running.url}/metrics", timeout=15),
                   requests.get(f"{running.url}/healthz", timeout=15),
                   deliver(running.url, an_event("evt_c", "customer.created", a_customer(), NOW))):
        assert answer.status_code == 503 and "event store" in answer.text, answer.text


def test_a_delivery_that_cannot_be_recorded_is_500_and_recorded_when_stripe_retries(server):
    (running, eventstore) = server
    with psycopg.connect(eventstore, autocommit=True) as conn:
        conn.execute("ALTER TABLE stripe_event_seen RENAME TO stripe_event_seen_away")
        event = an_event("evt_c", "customer.created", a_customer(), NOW)
        failed = deliver(running.url, event)
        conn.execute("ALTER TABLE stripe_event_seen_away RENAME TO stripe_event_seen")
    assert failed.status_code == 500 and "retry" in failed.json()["error"]
    assert deliver(running.url, event).status_code == 200
    assert recorded(eventstore) == [("acc_000042", "evt_c")]


def test_webhooks_are_refused_with_503_without_a_signing_secret(stores):
    with served(serve_env(stores, STRIPE_WEBHOOK_SECRET="")) as running:
        response = deliver(running.url, an_event("evt_c", "customer.created", a_customer(), NOW))
    assert response.status_code == 503 and "STRIPE_WEBHOOK_SECRET" in response.json()["error"]


def test_sigterm_stops_the_server_cleanly(stores):
    with served(serve_env(stores)) as running:
        running.process.send_signal(signal.SIGTERM)
        assert running.process.wait(timeout=15) == 0


def test_a_port_in_use_is_one_line_naming_the_option_with_exit_code_2(stores):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(recompute_command("serve", "--port", str(port)), env=serve_env(stores),
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line == f"recompute: --port {port}: address already in use"


@pytest.mark.parametrize("host", ["999.1.1.1", "no-such-host.invalid"])
def test_a_bad_host_is_one_line_naming_the_option_with_exit_code_2(stores, host):
    result = subprocess.run(recompute_command("serve", "--host", host, "--port", "0"), env=serve_env(stores),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"recompute: --host {host}: ")
