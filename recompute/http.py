"""`recompute serve`: the ASGI app (starlette) and its server (uvicorn), every request answered.

    POST /webhooks/stripe   200 recorded (or already recorded; sent after the commit)
                            400 bad signature, not JSON, not an event object with a string id
                            408 the body did not arrive within BODY_TIMEOUT seconds
                            413 a body over BODY_LIMIT bytes (Content-Length checked before reading,
                                a chunked body counted while read)
                            503 STRIPE_WEBHOOK_SECRET unset, or the event store down (the reason said)
                            500 recording failed otherwise (Stripe retries)
    GET  /healthz           200 {"status": "ok"} | 503 with the reason
    GET  /metrics           Prometheus text (recompute/metrics.py) | 503 with the reason
    anything else           405 a wrong method on one of these paths, 404 another path

A Content-Length that is not a size (`abc`, `-5`) never reaches the app: uvicorn's parser answers
400 and closes the connection. 408 and 413 close the connection too (the rest of the body is not read).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

import anyio
import psycopg_pool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ingestion.stripe.webhooks import DeliveryRefused, GroupCommit, StoreDown, check_delivery, store_down_reason
from recompute.metrics import ServeMetrics

BODY_LIMIT = 1024 * 1024  # Stripe's event payloads are a few KB; its largest well under this
BODY_TIMEOUT = 5.0  # seconds for the whole body, once the headers are in


class _BodyRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


async def read_body(request: Request, *, limit: int = BODY_LIMIT, timeout: float = BODY_TIMEOUT) -> bytes:
    """The body, refused (413) before reading when its Content-Length is over `limit`, cut (413) as
    soon as a chunked one passes it, and given up (408) after `timeout` seconds."""
    announced = request.headers.get("content-length")
    if announced is not None and announced.isdigit() and int(announced) > limit:
        raise _BodyRefused(413, f"body of {announced} bytes is over the limit of {limit}")
    body = bytearray()
    try:
        with anyio.fail_after(timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise _BodyRefused(413, f"body is over the limit of {limit} bytes")
    except TimeoutError:
        raise _BodyRefused(408, f"body did not arrive within {timeout:g} s") from None
    return bytes(body)


class WebhookApp:
    """The three endpoints, over a connection pool to the event store and a delivery recorder."""

    def __init__(self, *, pool: psycopg_pool.ConnectionPool, recorder: GroupCommit, secret: str | None,
                 on_ready: Callable[[], None] = lambda: None) -> None:
        self._pool = pool
        self._on_ready = on_ready
        self._recorder = recorder
        self._secret = secret
        self.metrics = ServeMetrics(pool)

    def asgi(self) -> Starlette:
        return Starlette(routes=[Route("/webhooks/stripe", self.webhook, methods=["POST"]),
                                 Route("/healthz", self.health, methods=["GET"]),
                                 Route("/metrics", self.scrape, methods=["GET"])],
                         lifespan=self._lifespan)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app):
        await run_in_threadpool(self._pool.open, wait=False)
        threading.Thread(target=self._warm_metrics, name="metrics warm-up", daemon=True).start()
        self._on_ready()
        try:
            yield
        finally:
            await self._recorder.close()
            await run_in_threadpool(self._pool.close, timeout=5)

    def _warm_metrics(self) -> None:
        """The first scrape counts the whole log's events (~1 s on a 10,000-account log); later
        scrapes only what was appended since. Done once at start, so no scrape waits for it."""
        with contextlib.suppress(Exception):
            generate_latest(self.metrics.registry)

    async def webhook(self, request: Request) -> Response:
        started = time.perf_counter()
        outcome, response = await self._webhook(request)
        self.metrics.deliveries.labels(outcome).inc()
        self.metrics.delivery_seconds.observe(time.perf_counter() - started)
        return response

    async def _webhook(self, request: Request) -> tuple[str, Response]:
        try:
            body = await read_body(request)
        except _BodyRefused as refused:
            return ("too_large" if refused.status == 413 else "timeout"), _error(refused.status, str(refused),
                                                                                  close=True)
        except ClientDisconnect:
            return "disconnected", _error(400, "the client went away", close=True)
        if not self._secret:
            return "refused", _error(503, "webhooks are refused: STRIPE_WEBHOOK_SECRET is not set")
        try:
            envelope = check_delivery(body, request.headers.get("stripe-signature"), self._secret)
        except DeliveryRefused as refused:
            outcome = "bad_signature" if str(refused).startswith("signature") else "malformed"
            return outcome, _error(400, str(refused))
        try:
            await self._recorder.deliver(envelope)
        except StoreDown as down:
            return "store_down", _error(503, str(down))
        except Exception:  # noqa: BLE001 - logged by the recorder; Stripe retries on a 500
            return "failed", _error(500, "could not record the event; retry")
        return "recorded", JSONResponse({"received": True})

    async def health(self, request: Request) -> Response:
        try:
            await run_in_threadpool(self._ping)
        except Exception as error:  # noqa: BLE001 - answered with its reason
            return JSONResponse({"status": "unavailable", "error": _reason(error)}, status_code=503)
        return JSONResponse({"status": "ok"})

    def _ping(self) -> None:
        with self._pool.connection(timeout=5) as conn:
            conn.execute("SELECT 1")

    async def scrape(self, request: Request) -> Response:
        try:
            text = await run_in_threadpool(generate_latest, self.metrics.registry)
        except Exception as error:  # noqa: BLE001 - answered with its reason
            down = store_down_reason(error)
            return Response(f"{down or 'metrics failed: ' + _reason(error)}\n", status_code=503 if down else 500,
                            media_type="text/plain")
        return Response(text, media_type=CONTENT_TYPE_LATEST)


def _reason(error: Exception) -> str:
    return store_down_reason(error) or " ".join(str(error).split()) or type(error).__name__


def _error(status: int, reason: str, *, close: bool = False) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers={"Connection": "close"} if close else None)
