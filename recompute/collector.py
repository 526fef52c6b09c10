"""The cyclic garbage collector in a long-running process (`project --follow`).

    collect_rarely()   what is alive now left out of every collection (gc.freeze), and a full
                       collection at most a tenth as often as Python's default
    settle_step()      after each step: its young garbage collected, what it left alive frozen too

A follower holds what it read and folded across steps (projections/follow/streams.py,
folds.py): a few hundred thousand objects, growing with the streams. Each full collection walks
all of them with the GIL held: measured in a 150 s load (1,000 accounts, 100 changes/s), one to
two a 10 s, 100-280 ms each, 2-4.5% of the process's time, growing with the heap; a step caught
behind one waits for it. Almost nothing a follower makes is cyclic (events, facts and rows are
trees; reference counting frees them), so rarer full collections cost little memory.

Rarer was not enough: what a follower keeps grows with the streams, and each full collection
still walked all of it (late in 5-minute chaos runs, steps of a few accounts took 0.4-0.7 s, a
pause every 30-75 s, growing). So after each step what it left alive is frozen too (`settle_step`):
a full collection then walks only what the steps since made. A cycle the step made and dropped
is freed by the young collection first; one that becomes garbage after it was frozen (nothing a
follower keeps is known to be cyclic) would stay until the process ends.
"""

from __future__ import annotations

import gc

FULL_EVERY = 100  # young collections between two full ones (Python's default: 10)


def collect_rarely() -> None:
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_EVERY)


def settle_step() -> None:
    """After a step: the young generations collected (the cycles it made and dropped are freed),
    then what it left alive frozen, so no full collection walks it again."""
    gc.collect(1)
    gc.freeze()

