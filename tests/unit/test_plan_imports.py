"""What `recompute plan` imports: its start is part of every plan's time (issue 23), so the code of
other commands stays out of it."""

from __future__ import annotations

import subprocess
import sys

NOT_ON_THE_PLAN_PATH = ("ingestion.legacy.cdc.pgoutput", "recompute.check", "stripe", "kombu", "rich")


def test_the_plan_command_imports_no_other_commands_code():
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, recompute.cli, recompute.cli.plan; print(' '.join(sys.modules))"],
        capture_output=True, text=True, check=True).stdout.split()
    assert [name for name in NOT_ON_THE_PLAN_PATH if name in imported] == []
