"""The circuit breaker of `project`: too many accounts corrected in a window stops the writing.

    limit(accounts, max_share)                  pure: how many accounts may be corrected per window
    trips(corrected, batch, limit)              pure: whether writing this batch would pass it (sets of
                                                accounts: one corrected again counts once)
    read_breaker / trip / resume                the one row of follow_breaker (projections/follow/tracking.py)
    corrected_in_window(conn, now, window_s)    accounts the followers' runs corrected since
                                                max(now - window, the last resume) (follow_corrected)

The default is `apply`'s blast-radius guard spread over an hour: 10% of the accounts per hour.
Open, the followers keep projecting (states, positions, timers) but write no legacy store; the
accounts they would have corrected are kept (follow_withheld) and re-evaluated once an operator
runs `recompute project --resume`: those are written then (the operator looked at them), and the
window counts again from the resume. `status` and `/metrics` say it is open and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from eventlog.stores import Connection

WINDOW_S = 3600.0


def limit(accounts: int, max_share: float) -> int:
    """Pure: accounts that may be corrected per window (at least 1, so a small fleet can be corrected)."""
    return max(1, math.floor(max_share * accounts))


def trips(corrected: set[str], batch: set[str], limit_: int) -> bool:
    """Pure: correcting the accounts of `batch` after those `corrected` in the window would pass `limit_`."""
    return bool(batch) and len(corrected | batch) > limit_


@dataclass(frozen=True)
class Breaker:
    open: bool
    tripped_at: datetime | None = None
    reason: str | None = None
    resumed_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {"open": self.open, "tripped_at": self.tripped_at and self.tripped_at.isoformat(),
                "reason": self.reason, "resumed_at": self.resumed_at and self.resumed_at.isoformat()}


def read_breaker(conn: Connection) -> Breaker:
    row = conn.execute("SELECT open, tripped_at, reason, resumed_at FROM follow_breaker WHERE id = 1").fetchone()
    return Breaker(*row) if row else Breaker(open=False)


def trip(conn: Connection, reason: str) -> None:
    conn.execute("UPDATE follow_breaker SET open = true, tripped_at = now(), reason = %s WHERE id = 1 AND NOT open",
                 (reason,))


def resume(conn: Connection) -> bool:
    """Closes the breaker; False when it was not open."""
    with conn.transaction():
        return conn.execute("UPDATE follow_breaker SET open = false, resumed_at = now() WHERE id = 1 AND open"
                            ).rowcount == 1


def restart_window(conn: Connection) -> None:
    """After the accounts withheld until a resume are written: the window starts again after them."""
    conn.execute("UPDATE follow_breaker SET resumed_at = clock_timestamp() WHERE id = 1 AND NOT open")


def corrected_in_window(conn: Connection, now: datetime, window_s: float = WINDOW_S) -> set[str]:
    since = now - timedelta(seconds=window_s)
    resumed = read_breaker(conn).resumed_at
    if resumed is not None and resumed > since:
        since = resumed
    return {r[0] for r in conn.execute("SELECT account_id FROM follow_corrected WHERE corrected_at > %s", (since,))}
