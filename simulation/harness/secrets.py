"""The secrets a command was configured with, and whether any of them shows in what it printed.

The test databases' DSNs carry a password the server ignores (it trusts loopback), so every run of
the command line has a DSN password to keep to itself, besides the Stripe key and webhook secret and
the broker URL's password when the run is given them. `leaked(output, env)` names the variables
whose secret appears in `output`; the suite's runners of `recompute` assert there are none.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

import psycopg.conninfo


def secrets_of(env: Mapping[str, str]) -> dict[str, str]:
    """variable -> the text that must never be printed (a broker URL's password with its ':'..'@')."""
    found = {}
    for variable, value in env.items():
        if not value:
            continue
        if variable.startswith("RECOMPUTE_") and variable.endswith("_DSN"):
            try:
                password = psycopg.conninfo.conninfo_to_dict(value).get("password")
            except psycopg.ProgrammingError:
                continue
            if password:
                found[variable] = str(password)
        elif variable in ("STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET"):
            found[variable] = value
        elif variable == "RECOMPUTE_BROKER_URL" and (password := urlsplit(value).password):
            found[variable] = f":{password}@"
    return found


def leaked(output: str, env: Mapping[str, str]) -> list[str]:
    return sorted(variable for variable, secret in secrets_of(env).items() if secret in output)
