"""One line per change of state, never one per retry (cli.md, RECOMPUTE_LOG_FORMAT).

    health = Health(logger, "the event store", source="eventstore")
    health.down(error)     # the first failure: "the event store is gone: <why>; retrying" (a warning)
    health.down(error)     # the same outage: nothing
    health.up()            # "the event store is back after 2.3 s" (info), once
"""

from __future__ import annotations

import logging
import random
import time


class Health:
    def __init__(self, logger: logging.Logger, what: str, **context: object) -> None:
        self.logger = logger
        self.what = what
        self.context = context
        self.down_since: float | None = None

    @property
    def is_down(self) -> bool:
        return self.down_since is not None

    def down(self, reason: object, *, gone: str = "is gone") -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.logger.warning("%s %s: %s; retrying", self.what, gone, " ".join(str(reason).split()),
                                extra=self.context)

    def up(self, detail: str = "") -> None:
        if self.down_since is not None:
            self.logger.info("%s is back after %.1f s%s", self.what, time.monotonic() - self.down_since,
                             f" ({detail})" if detail else "", extra=self.context)
            self.down_since = None


class Backoff:
    """Capped exponential backoff with full jitter: the n-th wait in a row is uniform in
    [0, min(cap, first * 2**n)], so followers that lost the same server do not come back in step.
    (Not stamina's or tenacity's loop: their sleeps cannot be cut short by SIGTERM's stop event.)"""

    def __init__(self, first: float = 0.2, cap: float = 5.0) -> None:
        self.first, self.cap, self.failures = first, cap, 0

    def next(self) -> float:
        self.failures += 1
        return random.uniform(0, min(self.cap, self.first * 2 ** (self.failures - 1)))

    def reset(self) -> None:
        self.failures = 0
