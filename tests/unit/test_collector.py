"""A long-running process collects cyclic garbage rarely, and never walks what was alive at its start."""

import gc

from recompute.collector import FULL_EVERY, collect_rarely


def test_collecting_rarely_freezes_what_is_alive_and_spaces_the_full_collections():
    before = gc.get_threshold()
    try:
        collect_rarely()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (before[0], before[1], FULL_EVERY) and FULL_EVERY > before[2]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
