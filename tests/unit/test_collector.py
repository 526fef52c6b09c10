"""A long-running process collects cyclic garbage rarely, and never walks what was alive at its start."""

import gc
import weakref

from recompute.collector import FULL_EVERY, collect_rarely, settle_step


def test_collecting_rarely_freezes_what_is_alive_and_spaces_the_full_collections():
    before = gc.get_threshold()
    try:
        collect_rarely()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (before[0], before[1], FULL_EVERY) and FULL_EVERY > before[2]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_settling_a_step_frees_the_cycles_it_dropped_and_freezes_what_it_left_alive():
    class Node:
        pass

    gc.disable()  # no automatic collection moves them on before the step is settled
    try:
        kept = Node()
        kept.me = kept
        dropped = Node()
        dropped.me = dropped
        gone = weakref.ref(dropped)
        del dropped
        frozen = gc.get_freeze_count()
        settle_step()
        assert gone() is None
        assert gc.get_freeze_count() > frozen and kept.me is kept
    finally:
        gc.unfreeze()
        gc.enable()
