"""Where the shared Stripe payloads are: ../shared/fixtures/stripe beside the clone (as CI lays it
out), or under RECOMPUTE_SHARED_DIR. Missing, it fails loudly once instead of per payload."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("RECOMPUTE_SHARED_DIR") or Path(__file__).resolve().parents[3] / "shared")


def stripe_fixtures() -> Path:
    path = SHARED / "fixtures" / "stripe"
    if not path.is_dir():
        pytest.fail(f"no Stripe fixtures at {path}: shared/ must sit beside the clone (or set RECOMPUTE_SHARED_DIR)",
                    pytrace=False)
    return path
