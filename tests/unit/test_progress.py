"""The progress bar shows only on a terminal: a pipe or a log file gets nothing."""

from __future__ import annotations

from recompute.progress import progress


def test_progress_on_a_stderr_that_is_not_a_terminal_writes_nothing(capsys):
    with progress("backfill", unit="partitions") as step:
        for done in range(33):
            step(done, 32)
    assert capsys.readouterr() == ("", "")
