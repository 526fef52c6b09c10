"""The settings as an operator may see them (`recompute check`): each by its environment name, its
value with secrets masked, and where it came from (the environment, the config file, or the default).

Masked: a DSN's password, the Stripe API key and webhook secret (all but their kind, `sk_live_`,
`whsec_`), and the broker URL's password (kombu's own sanitiser).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kombu.utils.url import maybe_sanitize_url

from eventlog.stores import ProgrammingError, make_dsn, parse_dsn
from recompute.settings import DEFAULT, DSN_VARIABLES, OWNERS, SETTING_NAMES, Settings

MASK = "****"
# What each setting means when it is not set (cli.md, "Configuration", "when unset").
UNSET = {
    **dict.fromkeys(DSN_VARIABLES.values(), "the embedded default"),
    "RECOMPUTE_RULES": "the built-in rules v1",
    "STRIPE_API_KEY": "Stripe is not polled",
    "RECOMPUTE_STRIPE_API_BASE": "Stripe's own",
    "STRIPE_WEBHOOK_SECRET": "serve refuses webhooks",
    "RECOMPUTE_DASK_SCHEDULER": "a local cluster of --workers processes",
    "RECOMPUTE_BROKER_URL": "events wait in the outbox",
    "RECOMPUTE_LOG_FORMAT": "text",
}


@dataclass(frozen=True)
class ShownSetting:
    name: str
    value: str | None  # masked; None when unset
    origin: str  # "environment", "config file PATH" or "default"
    meaning: str | None = None  # for an unset setting: what happens instead


def shown_settings(settings: Settings) -> list[ShownSetting]:
    shown = []
    for name in SETTING_NAMES:
        value = settings.configured.get(name)
        origin = settings.origins.get(name, DEFAULT)
        if value is not None:
            shown.append(ShownSetting(name, masked(name, value), origin))
        elif name == "RECOMPUTE_DATA_DIR":
            shown.append(ShownSetting(name, str(settings.data_dir), origin))
        else:
            shown.append(ShownSetting(name, None, origin, UNSET.get(name)))
    return shown


def render_settings(settings: Settings) -> list[str]:
    """One line per setting, then one per [owners] entry: `NAME = value  (origin)`."""
    lines = []
    for setting in shown_settings(settings):
        value = setting.value if setting.value is not None else f"unset: {setting.meaning}"
        lines.append(f"{setting.name} = {value}  ({setting.origin})")
    lines += [f"[owners] {key} = {owner}  ({settings.origins[OWNERS]})" for key, owner in settings.owners.items()]
    return lines


def masked(name: str, value: str) -> str:
    if name in DSN_VARIABLES.values():
        return masked_dsn(value)
    if name in ("STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET"):
        kind = re.match(r"[a-z]+_(?:(?:live|test)_)?", value)
        return f"{kind.group() if kind else ''}{MASK}"
    if name == "RECOMPUTE_BROKER_URL":
        return maybe_sanitize_url(value, mask=MASK)
    return value


def masked_dsn(dsn: str) -> str:
    """The DSN with its password masked, as key=value pairs (a URI is rewritten that way too)."""
    try:
        params = parse_dsn(dsn)
    except ProgrammingError:
        return MASK  # unparseable: it may hold anything
    if "password" in params:
        params["password"] = MASK
    return make_dsn(**params)

