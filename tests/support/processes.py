"""Stopping a process a test started: SIGTERM, then SIGKILL if it has not exited within `timeout`."""

from __future__ import annotations

import subprocess


def terminate(process: subprocess.Popen, timeout: float = 15) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
