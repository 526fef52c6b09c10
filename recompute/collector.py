"""The cyclic garbage collector in a long-running process (`project --follow`).

    collect_rarely()   what is alive now left out of every collection (gc.freeze), and a full
                       collection at most a tenth as often as Python's default

A follower holds what it read and folded across steps (projections/follow/streams.py,
folds.py): a few hundred thousand objects, growing with the streams. Each full collection walks
all of them with the GIL held: measured in a 150 s load (1,000 accounts, 100 changes/s), one to
two a 10 s, 100-280 ms each, 2-4.5% of the process's time, growing with the heap; a step caught
behind one waits for it. Almost nothing a follower makes is cyclic (events, facts and rows are
trees; reference counting frees them), so rarer full collections cost little memory.
"""

from __future__ import annotations

import gc

FULL_EVERY = 100  # young collections between two full ones (Python's default: 10)


def collect_rarely() -> None:
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_EVERY)
