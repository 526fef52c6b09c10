"""Runs `recompute serve`: binds the address itself (so a port in use or a bad host is one line
naming the option), then uvicorn on that socket until SIGTERM or SIGINT (exit 0)."""

from __future__ import annotations

import errno
import signal
import socket
import threading
from collections.abc import Callable

import psycopg_pool
import uvicorn

from eventlog.stores import Stores
from ingestion.stripe.ingester import StripeIngester
from ingestion.stripe.webhooks import GroupCommit, ThreadPerDelivery, pooled_recorder
from recompute.http import WebhookApp
from recompute.metrics import ServeMetrics

RECORDERS = {"group": GroupCommit, "group2": lambda record: GroupCommit(record, writers=2),
             "thread": ThreadPerDelivery}


class ServeError(Exception):
    """The address cannot be listened on; the message names the option."""


def bind(host: str, port: int) -> socket.socket:
    try:
        [(family, kind, proto, _, address), *_] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                                     flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as error:
        raise ServeError(f"--host {host}: not an address or a name that resolves ({_strerror(error)})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise ServeError(f"--port {port}: address already in use") from None
        if error.errno == errno.EACCES:
            raise ServeError(f"--port {port}: permission denied") from None
        raise ServeError(f"--host {host}: cannot listen there ({_strerror(error)})") from None
    return sock


def _strerror(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


def run(sock: socket.socket, *, stores: Stores, make_ingester: Callable[[], StripeIngester],
        secret: str | None, on_ready: Callable[[], None], http: str = "httptools",
        recording: str = "group", watch_followers: bool = False) -> None:
    """Serves on `sock` until SIGTERM/SIGINT, then finishes the requests in flight and returns.
    `on_ready` is called once it serves (and SIGTERM/SIGINT stop it cleanly).

    `recording` "group" (one writer, the default) or "thread" (a transaction per delivery, kept for
    scripts/load_webhooks.py to compare); `http` the parser, "httptools" (on uvloop) or "h11".
    `watch_followers`: /metrics also says the followers' state and the change streams' slots."""
    server, metrics = build(stores=stores, make_ingester=make_ingester, secret=secret,
                            on_ready=on_ready, http=http, recording=recording)
    if watch_followers:
        metrics.watch_followers(stores)
    # uvicorn re-raises the signal it stopped on once it is done; ignoring it then makes the exit 0.
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def build(*, stores: Stores, make_ingester: Callable[[], StripeIngester], secret: str | None,
          on_ready: Callable[[], None], http: str = "httptools",
          recording: str = "group") -> tuple[uvicorn.Server, ServeMetrics]:
    """The server of `serve`, not started, and its metrics: `run` runs it in the main thread;
    `project --port` in a thread of its own (uvicorn installs no signal handlers there;
    `should_exit` stops it) and observes its own figures into the metrics."""
    threaded = recording == "thread"
    ingesters = threading.local()  # an ingester keeps state during a call: one per thread

    def record_deliveries(envelopes: list[dict], *, log) -> None:
        if not hasattr(ingesters, "one"):
            ingesters.one = make_ingester()
        ingesters.one.record_deliveries(envelopes, log=log)

    # No `check` of a connection each time it is taken: that was a round trip per group on the writer's
    # path (docs/design/serve.md). A connection found broken fails its group with 503 (Stripe retries)
    # and the pool replaces it when it comes back.
    pool = psycopg_pool.ConnectionPool(
        stores.eventstore, min_size=2, max_size=10 if threaded else 4, open=False, name="recompute serve",
        kwargs={"connect_timeout": 3, "application_name": "recompute serve"})
    recorder = RECORDERS[recording](pooled_recorder(pool, record_deliveries))
    webhooks = WebhookApp(pool=pool, recorder=recorder, secret=secret, on_ready=on_ready)
    app = webhooks.asgi()
    config = uvicorn.Config(app, http=http, loop="uvloop" if http == "httptools" else "asyncio",
                            lifespan="on", log_level="warning", access_log=False, timeout_graceful_shutdown=10,
                            backlog=2048)
    return uvicorn.Server(config), webhooks.metrics
