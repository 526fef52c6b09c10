"""README command 1: `recompute demo` on its own embedded PostgreSQL, from nothing, told in one screen."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_dir():
    """Outside pytest's own temporary root: the embedded server runs as another user (pgserver), which
    must traverse the folders above its data, and a pytest session starting meanwhile on this machine
    sets that root back to 0700."""
    made = Path(tempfile.mkdtemp(prefix="recompute-demo-test-"))
    made.chmod(0o755)
    yield made
    shutil.rmtree(made, ignore_errors=True)


def test_the_demo_tells_the_drift_found_an_account_fixed_and_nothing_left_in_one_screen(data_dir):
    tmp_path = data_dir
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECOMPUTE_", "STRIPE_"))}
    env.update(RECOMPUTE_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT))
    recompute = [sys.executable, "-c", "from recompute.cli import main; main()"]
    try:
        result = subprocess.run([*recompute, "demo", "--accounts", "120", "--drifting", "12"], env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        out = result.stdout
        lines = out.replace(str(tmp_path), "<tmp>").splitlines()  # the data directory is no part of the width
        assert len(lines) < 60 and max(len(line) for line in lines) <= 120, "not one screen of a 120-column terminal"
        assert "120 accounts checked, 12 disagree" in out and "matches the drift injected: yes" in out
        assert "corrections by column" in out and re.search(r"^    acc_\d+  \S+\.\S+  .+ -> .+$", out, re.M)
        account = re.search(r"^explain (acc_\d+), before apply: its dunning stage is wrong$", out, re.M).group(1)
        before, _, after = out.partition(f"explain {account}, after apply")
        assert re.search(r"^  drift  update \S+dunning\[" + account + r"\]\.stage  ", before, re.M), \
            "the account explained before apply has no stage correction"
        assert re.search(r"^apply +\d+ corrections written in 12 accounts", before, re.M) and "announced" in before
        assert "0 corrections left" in after and re.search(r"^  applied  .* update \S+dunning\[" + account, after,
                                                            re.M)
        assert re.search(r"^plan again +0 accounts disagree, 0 corrections$", after, re.M)
        report = Path(re.search(r"^report +.*: (\S+\.html)$", out, re.M).group(1))
        assert report.read_text().startswith("<!DOCTYPE html>") and f'id="explain-{account}"' in report.read_text()
    finally:
        subprocess.run([*recompute, "embedded", "stop"], env=env, capture_output=True, timeout=60)
