"""The suite's runners fail a run of `recompute` that printed a configured secret (tests/support/cli.py)."""

from __future__ import annotations

import subprocess

import pytest

from simulation.harness.secrets import leaked
from tests.support.cli import no_secrets

ENV = {"RECOMPUTE_SUBS_DSN": "host=127.0.0.1 user=postgres password=pw-subs-123 dbname=subs",
       "STRIPE_API_KEY": "sk_test_abc123", "STRIPE_WEBHOOK_SECRET": "whsec_xyz789",
       "RECOMPUTE_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//"}


def a_run(stdout: str = "", stderr: str = "") -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess(["python", "-c", "...", "check"], 0, stdout, stderr)


@pytest.mark.parametrize(("printed", "variable"), [
    ("RECOMPUTE_SUBS_DSN = host=127.0.0.1 user=postgres password=pw-subs-123", "RECOMPUTE_SUBS_DSN"),
    ("Stripe refused sk_test_abc123", "STRIPE_API_KEY"),
    ("bad signature for whsec_xyz789", "STRIPE_WEBHOOK_SECRET"),
    ("the broker at amqp://guest:guest@127.0.0.1:5672// refused us", "RECOMPUTE_BROKER_URL"),
])
def test_a_run_that_printed_a_secret_fails(printed, variable):
    with pytest.raises(AssertionError, match=f"printed the secret of {variable}"):
        no_secrets(a_run(stderr=printed), ENV)


def test_masked_values_and_a_broker_user_named_like_its_password_pass():
    shown = "password=**** sk_**** whsec_**** amqp://guest:****@127.0.0.1:5672//"
    assert leaked(shown, ENV) == [] and no_secrets(a_run(stdout=shown), ENV).stdout == shown
