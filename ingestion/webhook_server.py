"""`recompute serve`: Stripe webhook deliveries into the log, plus health and metrics.

    POST /webhooks/stripe   verified with the `Stripe-Signature` header (stripe's own
                            WebhookSignature, 5 minutes tolerance), then recorded exactly like an
                            Events API read: dedup on evt_ id, routing, parking.
                            200 recorded (or already recorded) | 400 bad signature or body |
                            503 no STRIPE_WEBHOOK_SECRET | 500 could not record (Stripe retries)
    GET  /healthz           200 when the event store answers, else 503
    GET  /metrics           Prometheus text: events in the log, parked records, deliveries by outcome
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import psycopg
import stripe

from ingestion.stripe_ingest import StripeIngester

TOLERANCE_SECONDS = 300


class WebhookApp:
    def __init__(self, *, ingester: StripeIngester, eventstore_dsn: str, secret: str | None) -> None:
        self._ingester = ingester
        self._dsn = eventstore_dsn
        self._secret = secret
        self._outcomes: Counter[str] = Counter()
        self._lock = threading.Lock()

    def handle(self, method: str, path: str, headers, body: bytes) -> tuple[int, dict | str]:
        if (method, path) == ("POST", "/webhooks/stripe"):
            status, answer = self._webhook(headers.get("Stripe-Signature"), body)
            with self._lock:
                self._outcomes[str(status)] += 1
            return status, answer
        if (method, path) == ("GET", "/healthz"):
            return self._health()
        if (method, path) == ("GET", "/metrics"):
            return 200, self._metrics()
        return 404, {"error": f"no {method} {path}"}

    def _webhook(self, signature: str | None, body: bytes) -> tuple[int, dict]:
        if not self._secret:
            return 503, {"error": "webhooks are refused: STRIPE_WEBHOOK_SECRET is not set"}
        try:
            stripe.WebhookSignature.verify_header(body, signature, self._secret, tolerance=TOLERANCE_SECONDS)
        except stripe.SignatureVerificationError as error:
            return 400, {"error": f"signature check failed: {error.user_message or error}"}
        try:
            envelope = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            return 400, {"error": f"body is not JSON: {error}"}
        try:
            report = self._ingester.record_deliveries([envelope])
        except psycopg.Error as error:
            print(f"recompute serve: could not record {envelope.get('id')}: {error}", file=sys.stderr)
            return 500, {"error": "could not record the event; retry"}
        return 200, {"received": True, "appended": report.appended, "parked": report.parked}

    def _health(self) -> tuple[int, dict]:
        try:
            with psycopg.connect(self._dsn, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as error:
            return 503, {"status": "unavailable", "eventstore": str(error).strip()}
        return 200, {"status": "ok"}

    def _metrics(self) -> str:
        with psycopg.connect(self._dsn, connect_timeout=2) as conn:
            events = conn.execute("SELECT coalesce(max(notification_id), 0) FROM recompute_events").fetchone()[0]
            parked = conn.execute("SELECT count(*) FROM parked_record").fetchone()[0]
        lines = [
            "# TYPE recompute_log_events gauge", f"recompute_log_events {events}",
            "# TYPE recompute_parked_records gauge", f"recompute_parked_records {parked}",
            "# TYPE recompute_webhook_deliveries_total counter",
        ]
        with self._lock:
            lines += [f'recompute_webhook_deliveries_total{{status="{code}"}} {n}'
                      for code, n in sorted(self._outcomes.items())]
        return "\n".join(lines) + "\n"


def make_server(app: WebhookApp, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, answer = app.handle(method, self.path.split("?", 1)[0], self.headers, body)
            payload = answer.encode() if isinstance(answer, str) else orjson.dumps(answer)
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; version=0.0.4" if isinstance(answer, str)
                             else "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def log_message(self, format: str, *args) -> None:  # quiet: metrics count the outcomes
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
