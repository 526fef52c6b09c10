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


def test_demo_follow_shows_a_webhook_a_drift_and_a_timer_corrected_live_with_their_lag_then_stops_cleanly(data_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECOMPUTE_", "STRIPE_"))}
    env.update(RECOMPUTE_DATA_DIR=str(data_dir / "data"), PYTHONPATH=str(ROOT))
    recompute = [sys.executable, "-c", "from recompute.cli import main; main()"]
    try:
        result = subprocess.run([*recompute, "demo", "--accounts", "60", "--drifting", "6", "--follow"], env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        _, _, live = out.partition("\ncdc setup ")
        assert "3 change streams" in live and re.search(r"^follower +recompute project --follow .* serving on http", live,
                                                         re.M)
        lines = live.replace(str(data_dir), "<tmp>").splitlines()
        assert len(out.splitlines()) < 80 and max(len(line) for line in lines) <= 120
        lag = r"\n +(-?\d+\.\d\d) s after the {} to the correction committed \(the follower's own lag, kept for the report: "
        webhook = re.search(r"^webhook .*invoice\.payment_failed .*signed: 200\n  corrected  subs\.subs_invoice\[in_\w+\]"
                            r" inserted \(status open, attempt_count 1\)" + lag.format("webhook"), live, re.M)
        drift = re.search(r"^drift .*subs_dunning\[(acc_\d+)\]\.stage 'none' -> 'retrying'\n  corrected  "
                          r"subs\.subs_dunning\[\1\]\.stage 'retrying' -> 'none'" + lag.format("drift"), live, re.M)
        timer = re.search(r"^timer .*of (acc_\d+): open, due at .*\n.*\n.*\n  at due +\S+dunning\[\1\]\.stage 'none' -> "
                          r"'grace'.*" + lag.format("timer"), live, re.M)
        assert webhook and drift and timer, live
        assert float(timer.group(2)) >= 0, "the stage changed before the invoice fell due"
        assert re.search(r"^stopped +SIGTERM: stopped: the batch in hand was finished; leases released; exit 0$", live,
                         re.M)
        report = Path(re.search(r"^report +again, now with the correction lag .*: (\S+\.html)$", live, re.M).group(1))
        assert 'id="lag-table"' in report.read_text()
        assert re.search(r"^follow +3 corrections arrived \(webhook .* s, drift .* s, timer .* s\); the follower "
                         r"exited 0$", live, re.M)
    finally:
        subprocess.run([*recompute, "embedded", "stop"], env=env, capture_output=True, timeout=60)
