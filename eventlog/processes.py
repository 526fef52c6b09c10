"""Worker processes that die with the process that started them.

A pool's workers are separate processes: if `recompute` itself is killed (kill -9, OOM), Linux
leaves them running and still committing, racing the rerun. `die_with_parent` (a pool
initializer) asks the kernel to SIGKILL the worker when its parent goes (prctl PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def worker_pool(processes: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(processes, mp_context=get_context("fork"), initializer=die_with_parent,
                               initargs=(os.getpid(),))
