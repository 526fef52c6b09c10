#!/usr/bin/env python
"""Serve a Stripe world directory the way Stripe's API does, until interrupted.

    .venv/bin/python scripts/stripe_standin.py --world WORLD_DIR --api-key sk_test_x [--port 12111]

Prints the base address on its first line of output (point RECOMPUTE_STRIPE_API_BASE at it).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from simulation.stripe_standin import StripeStandIn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, required=True, help="directory written by StripeWorld.save")
    parser.add_argument("--api-key", required=True, help="the only key the stand-in accepts")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--retention-days", type=int, default=30)
    args = parser.parse_args(argv)
    if not (args.world / "meta.json").is_file():
        parser.error(f"--world {args.world}: no meta.json there; not a Stripe world directory")

    standin = StripeStandIn(args.world, api_key=args.api_key,
                            retention_days=args.retention_days, host=args.host, port=args.port)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    print(standin.start(), flush=True)
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        standin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
