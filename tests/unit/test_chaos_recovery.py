"""follow_chaos's two measures of a fault's recovery: every later change within 1 s, and the rest's
p99 within 1 s (the steady phase's own target)."""

import importlib
import sys
from datetime import UTC, datetime
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


sys.path.insert(0, str(SCRIPTS))
chaos = importlib.import_module("follow_chaos")
load = importlib.import_module("load_follow")


def lag(at: float, committed: float | None):
    return load.Lag(load.Change("acc", datetime.fromtimestamp(at, UTC), "legacy"), committed, None)


def steady_then(*outliers: tuple[float, float], end: float = 100.0, until: float = 130.0):
    """A change every 0.01 s from the fault's end to `until`, each corrected in 0.1 s, but `outliers`."""
    late = dict(outliers)
    return [lag(end + i / 100, late.get(round(i / 100, 2), 0.1)) for i in range(int((until - end) * 100))]


def test_one_slow_change_long_after_the_fault_is_late_for_every_change_but_not_for_the_p99():
    fault = chaos.Fault("listen_killed", start=100.0, end=100.0)
    found = steady_then((20.0, 2.0))
    assert chaos.recovery_of(fault, found, until=130.0) > 20
    assert chaos.back_to_steady(fault, found, until=130.0) == 0.0


def test_a_backlog_after_the_fault_is_back_once_what_follows_meets_the_target():
    fault = chaos.Fault("follower_killed", start=100.0, end=100.0)
    found = steady_then(*((i / 100, 4.0 - i / 100) for i in range(300)))  # the first 3 s wait for a lease
    back = chaos.back_to_steady(fault, found, until=130.0)
    assert back is not None and 2.5 <= back <= 3.0
    assert chaos.recovery_of(fault, found, until=130.0) >= 3.0


def test_a_follower_that_never_catches_up_is_never_back():
    fault = chaos.Fault("follower_frozen", start=100.0, end=115.0)
    found = [lag(115 + i / 10, 2.0 + i / 10) for i in range(100)]
    assert chaos.back_to_steady(fault, found, until=125.0) is None
