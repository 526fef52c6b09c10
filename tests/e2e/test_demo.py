"""README command 1: `recompute demo` on its own embedded PostgreSQL, from nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_finds_the_injected_drift_applies_it_and_then_finds_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECOMPUTE_", "STRIPE_"))}
    env.update(RECOMPUTE_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT))
    recompute = [sys.executable, "-c", "from recompute.cli import main; main()"]
    try:
        result = subprocess.run([*recompute, "demo", "--accounts", "120", "--drifting", "12"], env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert "120 accounts checked, 12 disagreeing" in out
        assert "the plan matches the drift the fleet injected: yes" in out
        assert "5. ingest + plan again: 0 accounts disagreeing, 0 corrections" in out
        assert "true state" in out and "past corrections (" in out
    finally:
        subprocess.run([*recompute, "embedded", "stop"], env=env, capture_output=True, timeout=60)
