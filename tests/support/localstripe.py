"""localstripe (PyPI), a Stripe emulator that is not ours, as a process on a free loopback port.

It binds every interface and saves its whole store to /tmp/localstripe.pickle at each write; the
process here binds 127.0.0.1 and keeps its store in memory (its `Store.dump_to_disk` does nothing),
so runs side by side do not share a file.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import stripe

from tests.support.processes import terminate

API_KEY = "sk_test_localstripe"
_RUN = """
import sys
from aiohttp import web
from localstripe import resources, server
resources.Store.dump_to_disk = lambda self: None
web.run_app(server.app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def localstripe() -> Iterator[str]:
    """Starts localstripe, waits until it answers, yields its base URL; stops it after."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", _RUN, str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    stderr = process.stderr.read() if process.stderr else ""
                    raise RuntimeError(f"localstripe did not start: {stderr}") from None
                time.sleep(0.1)
        yield base
    finally:
        terminate(process, timeout=10)


def client(base: str) -> stripe.StripeClient:
    return stripe.StripeClient(API_KEY, base_addresses={"api": base}, max_network_retries=0)
